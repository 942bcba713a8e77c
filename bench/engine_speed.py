"""Model time alone of each engine and precision: one thread, variants interleaved, best of R rounds.

This is the figure that chose udfs/engines.py AUTO on a loaded machine (bench/embed.py's Spark rows
need a quiet one). It prints one row per model and variant: items/s, the ratio to torch fp32, and the
minimum cosine to torch fp32, on 48 iconic200 photos (batches of 4) and 96 AG News test texts
(batches of 8).

    PYTHONPATH=. .venv/bin/python bench/engine_speed.py [--rounds 4] [--data ../shared/data] [--cache DIR]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.embed import write_texts  # noqa: E402
from udfs import cnn, images, texts  # noqa: E402

VARIANTS = [("torch", "fp32"), ("onnx", "fp32"), ("openvino", "fp32"), ("torch", "bf16"), ("openvino", "bf16")]


def load_inputs(data: Path, work: Path) -> tuple[np.ndarray, list[str]]:
    """([48, crop, crop, 3] uint8 iconic200 pixels, 96 AG News texts)."""
    prep = cnn.load_image_model(cnn.ImageModelSpec()).prep
    paths = sorted((data / "iconic200").rglob("*.jpg"))[:48]
    pixels = np.stack([images.load_pixels(p.read_bytes(), prep) for p in paths])
    docs, _ = write_texts(work / "texts.jsonl", data / "agnews" / "test.csv", 96)
    return pixels, docs


def runners(cache: str) -> dict:
    """{(kind, engine, precision): a function of the inputs → [n, dim] float32}."""
    out = {}
    for engine, precision in VARIANTS:
        image = cnn.load_image_model(cnn.ImageModelSpec(precision=precision, engine=engine, engine_cache=cache))
        text = texts.load_text_model(texts.TextModelSpec(precision=precision, engine=engine, engine_cache=cache))
        out[("images", engine, precision)] = lambda x, m=image: np.concatenate(
            [cnn.embed_batch(m, x[i:i + 4]) for i in range(0, len(x), 4)])
        out[("texts", engine, precision)] = lambda x, m=text: texts.embed_texts(m, x, 8).embeddings
    return out


def measure(run: dict, inputs: dict, rounds: int) -> list[tuple]:
    """[(kind, engine, precision, items/s, x torch fp32, min cosine to torch fp32)], best of `rounds`."""
    import torch

    torch.set_num_threads(1)
    best = {key: float("inf") for key in run}
    reference = {kind: run[(kind, "torch", "fp32")](inputs[kind]) for kind in inputs}
    cosine = {}
    for _ in range(rounds):
        for key, fn in run.items():
            start = time.perf_counter()
            vectors = fn(inputs[key[0]])
            best[key] = min(best[key], time.perf_counter() - start)
            cosine[key] = float((vectors * reference[key[0]]).sum(axis=1).min())
    return [(*key, len(inputs[key[0]]) / best[key], best[(key[0], "torch", "fp32")] / best[key], cosine[key])
            for key in run]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--cache", default="", help="engine cache (default: the engines' own default)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as work:
        pixels, docs = load_inputs(args.data, Path(work))
        rows = measure(runners(args.cache), {"images": pixels, "texts": docs}, args.rounds)
    print("| kind | engine precision | items/s | x torch fp32 | min cosine to torch fp32 |")
    print("|---|---|---:|---:|---:|")
    for kind, engine, precision, rate, ratio, cos in rows:
        print(f"| {kind} | {engine} {precision} | {rate:.1f} | {ratio:.2f} | {cos:.5f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
