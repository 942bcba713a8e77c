"""The demo's plan: its data and gold labels written as files, and each job it runs with its keys."""
from __future__ import annotations

import json
import logging
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jobs.core.config import ConfigError
from jobs.samples import datasets

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoOptions:
    """What the demo writes and runs; the names are the demo job's config keys."""

    output: str = "warehouse/demo"
    images: int = 2000
    texts: int = 1500
    seed: int = 0
    k: int = 10
    threshold: float = 0.95
    label_set: str = ""        # the label-set YAML file, resolved


INPUT_KEYS = ("input", "embeddings", "index", "neighbours", "labels_table")


@dataclass(frozen=True)
class Step:
    stage: str          # the demo summary's stage name
    job: str            # the job's name (`sparkamp <job>`)
    keys: dict[str, Any]

    def line(self) -> str:
        """One plan line: job, its main input → its output."""
        source = next(self.keys[k] for k in INPUT_KEYS if k in self.keys)
        extra = ", ".join(f"{k} {v}" for k, v in self.keys.items() if k in ("precision", "mode", "method"))
        return f"{self.stage:<28} {source} → {self.keys['output']}" + (f" ({extra})" if extra else "")


def steps(cfg: DemoOptions, precision: str) -> list[Step]:
    """Every job the demo runs, in order, with the keys it sets (the demo's shared keys fill the rest)."""
    base, data = Path(cfg.output), Path(cfg.output) / "data"

    def at(name: str) -> str:
        return str(base / name)

    images, texts = at("image_embeddings"), at("text_embeddings")
    index, neighbours, groups, ranks = at("image_index"), at("neighbours"), at("duplicate_groups"), at("uniqueness")
    labels, metrics = at("labels"), at("metrics")
    return [
        Step("embed-images", "embed-images", {"input": str(data / "images"), "output": images,
                                            "precision": precision}),
        Step("build-index", "build-index", {"embeddings": images, "output": index, "seed": cfg.seed}),
        Step("search", "search", {"index": index, "queries": images, "k": cfg.k, "exclude_self": True,
                                "output": neighbours}),
        Step("dedup", "dedup", {"embeddings": images, "index": index, "threshold": cfg.threshold,
                              "output": groups}),
        Step("unique", "unique", {"embeddings": images, "index": index, "output": ranks}),
        Step("embed-texts", "embed-texts", {"input": str(data / "fortunes.jsonl"), "output": texts,
                                          "precision": precision}),
        Step("assign-labels", "assign-labels", {"embeddings": texts, "labels": cfg.label_set, "method": "zero-shot",
                                              "top_k": 2, "head_output": at("label_head"), "output": labels}),
        Step("evaluate (retrieval)", "evaluate", {"neighbours": neighbours, "gold": str(data / "gold_images.json"),
                                                "output": metrics}),
        Step("evaluate (classification)", "evaluate", {"labels_table": labels, "output": metrics, "mode": "append",
                                                     "gold": str(data / "gold_texts.json")}),
        Step("report", "report", {"embeddings": images, "neighbours": neighbours, "unique": ranks, "dedup": groups,
                                "labels": labels, "metrics": metrics, "gold": str(data / "gold.json"),
                                "texts": str(data / "fortunes.jsonl"), "max_runs": 9, "title": "sparkamp demo",
                                "output": at("report")}),
    ]


def serve_command(cfg: DemoOptions) -> str:
    """The `sparkamp serve` command for the demo's outputs: image search and explorer on the index, the
    label playground on the fortunes' table and the zero-shot head."""
    keys = {step.stage: step.keys for step in steps(cfg, "fp32")}  # output paths do not depend on precision
    flags = {"--index": keys["build-index"]["output"], "--embeddings": keys["embed-images"]["output"],
             "--neighbours": keys["search"]["output"], "--duplicates": keys["dedup"]["output"],
             "--uniqueness": keys["unique"]["output"], "--gold": keys["report"]["gold"],
             "--label-embeddings": keys["embed-texts"]["output"], "--label-set": cfg.label_set,
             "--labels-head": keys["assign-labels"]["head_output"]}
    return "sparkamp serve " + " \\\n    ".join(f"{flag} {shlex.quote(value)}" for flag, value in flags.items())


def write_data(cfg: DemoOptions) -> dict[str, int]:
    """Fashion-MNIST PNGs, the sample photos, fortunes and their gold labels under `<output>/data`."""
    data = Path(cfg.output) / "data"
    shutil.rmtree(data, ignore_errors=True)  # a smaller re-run must not keep old files
    try:
        classes = datasets.write_fashion_mnist(data / "images" / "fashion", cfg.images, cfg.seed)
        photos = datasets.write_sample_photos(data / "images" / "photos")
        texts = datasets.write_fortunes(data / "fortunes.jsonl", cfg.texts, cfg.seed)
    except FileNotFoundError as exc:  # a data package is missing: the message says which
        raise ConfigError(str(exc)) from None
    gold_images = {f"fashion/{path}": label for path, label in classes.items()}  # ids are paths under images/
    with (data / "fortunes.jsonl").open(encoding="utf-8") as fh:
        gold_texts = {row["id"]: row["category"] for row in map(json.loads, fh)}
    for name, gold in (("gold_images", gold_images), ("gold_texts", gold_texts),
                       ("gold", {**gold_images, **gold_texts})):
        (data / f"{name}.json").write_text(json.dumps(gold, indent=0))
    return {"images": len(classes), "photos": len(photos), "texts": texts}
