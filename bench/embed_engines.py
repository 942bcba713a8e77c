"""The engines in bench/embed.py: which (engine, precision) pairs run, their one-off export and load
times, their vectors against torch fp32's, and their rows in the BENCHMARKS.md section."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from udfs import cnn, engines, texts

REFERENCE = ("torch", "fp32")
VARIANTS = (REFERENCE, ("onnx", "fp32"), ("openvino", "fp32"), ("torch", "bf16"), ("openvino", "bf16"))
TARGET_COS = {"fp32": 0.999, "bf16": 0.99}  # an engine at fp32 / any bf16, against torch fp32
TARGET_DROP = 0.5                            # rank-weighted P@15 points


@dataclass
class Quality:
    """A variant's vectors against torch fp32's on the same `rows`: cosine per row, and rank-weighted
    P@15 (%) of each."""

    rows: int
    cos_min: float
    cos_mean: float
    score_ref: float
    score: float


def spark_variant(engine: str, precision: str) -> str:
    """The Spark job's row name; torch rows keep the names they had before the engines came."""
    return f"Spark job, local[2] x 1 thread, {precision}" + ("" if engine == "torch" else f", {engine}")


def name(engine: str, precision: str) -> str:
    return f"{engine} {precision}"


def setup_times(cache: Path) -> dict[str, dict[str, float]]:
    """Per kind: seconds to export the model into the empty `cache` (once: every engine and precision
    runs the same .onnx file), and to load it with each engine (build the torch model, read the
    export, compile), in this process. Leaves the exports in `cache` for the Spark jobs."""
    loaders = {"images": lambda e, p: cnn.load_image_model(cnn.ImageModelSpec(
                   precision=p, engine=e, engine_cache=str(cache))),
               "sentences": lambda e, p: texts.load_text_model(texts.TextModelSpec(
                   precision=p, engine=e, engine_cache=str(cache)))}
    out: dict[str, dict[str, float]] = {}
    for kind, load in loaders.items():
        times: dict[str, float] = {}
        for engine, precision in VARIANTS:
            tick = time.perf_counter()
            model = load(engine, precision)
            times[name(engine, precision)] = time.perf_counter() - tick
            if model.runner is not None and model.runner.export.seconds:
                times["export"] = model.runner.export.seconds
        out[kind] = times
    return out


def cosine_rows(ref: dict[str, np.ndarray], other: dict[str, np.ndarray]) -> tuple[list[str], np.ndarray,
                                                                                   np.ndarray, np.ndarray]:
    """(ids, reference vectors, other vectors, cosine per id) over the ids both hold."""
    ids = sorted(set(ref) & set(other))
    x, y = np.stack([ref[i] for i in ids]), np.stack([other[i] for i in ids])
    cosine = (x * y).sum(axis=1) / np.linalg.norm(x, axis=1) / np.linalg.norm(y, axis=1)
    return ids, x, y, cosine


def check_rows(kind: str, data: str, qualities: dict[tuple[str, str], Quality]) -> list[tuple[str, str, str, bool]]:
    """(figure, measured, target, met) for each variant's cosine to torch fp32 and its P@15."""
    out = []
    for (engine, precision), q in qualities.items():
        target = TARGET_COS[precision]
        out.append((f"{kind}: {name(engine, precision)} cosine to torch fp32, min (mean) over {q.rows}",
                    f"{q.cos_min:.5f} ({q.cos_mean:.6f})", f">= {target}", q.cos_min >= target))
        out.append((f"{kind}: {data} rank-weighted P@15 (%), torch fp32 → {name(engine, precision)}",
                    f"{q.score_ref:.2f} → {q.score:.2f}", f"drop <= {TARGET_DROP}",
                    q.score_ref - q.score <= TARGET_DROP))
    return out


def setup_rows(times: dict[str, dict[str, float]]) -> list[str]:
    """Markdown: one-off export seconds and load seconds per engine, per kind."""
    loads = [name(e, p) for e, p in VARIANTS]
    rows = ["| model | export (one-off) s | " + " | ".join(f"load {n} s" for n in loads) + " |",
            "|---|---:|" + "---:|" * len(loads)]
    for kind, t in times.items():
        rows.append(f"| {kind} | {t.get('export', 0.0):.1f} | " + " | ".join(f"{t[n]:.1f}" for n in loads) + " |")
    return rows


def auto_rows(rates: dict[str, dict[tuple[str, str], float]],
              qualities: dict[str, dict[tuple[str, str], Quality]]) -> list[str]:
    """Markdown: per kind and precision, the fastest Spark variant meeting the cosine target, against
    what `engine: auto` picks (udfs.engines.AUTO)."""
    rows = ["| model | precision | fastest meeting the cosine target (this run) | `auto` picks |", "|---|---|---|---|"]
    for kind, by_variant in rates.items():
        for precision in ("fp32", "bf16"):
            fine = []
            for (engine, p), rate in by_variant.items():
                q = qualities[kind].get((engine, p))
                if p == precision and ((engine, p) == REFERENCE or (q is not None and q.cos_min >= TARGET_COS[p])):
                    fine.append((rate, engine))
            best = max(fine)[1] if fine else "—"
            pick = engines.resolve("auto", "images" if kind == "images" else "texts", precision)
            rows.append(f"| {kind} | {precision} | {best} | {pick} |")
    return rows
