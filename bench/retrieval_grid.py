"""iconic200 model × layer × pooling × flip × whitening grid, measured in one process (no Spark): one
forward pass per (model, flip) captures every compared block, so the grid costs 2 passes per model.

Descriptors are computed exactly as `udfs.cnn.embed_batch` computes them (`udfs.pooling`), and scored with
the evaluate job's metric (`udfs.similarity.query_metrics`, rank-weighted precision@15, self excluded).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

# per model: the compared blocks (end of the 80/112/192 stages, the last block); "" = the final features
LAYERS = {"efficientnet-lite0": ["_blocks.10", "_blocks.14", "_blocks.15", ""],
          "efficientnet-lite1": ["_blocks.14", "_blocks.19", "_blocks.20", ""],
          "efficientnet-lite2": ["_blocks.14", "_blocks.19", "_blocks.20", ""]}
K = 15


def iconic_classes(folder: Path) -> tuple[list[Path], np.ndarray]:
    gold = {k: v for pair in json.loads((folder / "classes.json").read_text()) for k, v in pair.items()}
    files = sorted((p for p in folder.iterdir() if p.stem in gold), key=lambda p: int(p.stem))
    names = sorted(set(gold.values()))
    return files, np.array([names.index(gold[p.stem]) for p in files])


def rank_weighted_p15(x: np.ndarray, classes: np.ndarray) -> float:
    """Mean rank-weighted precision@15 (x100) of every item against the others, cosine on rows of x."""
    from udfs.similarity import query_metrics

    sims = x @ x.T
    np.fill_diagonal(sims, -np.inf)
    top = np.argsort(-sims, axis=1)[:, :K]
    counts = np.bincount(classes)
    return 100 * float(np.mean([query_metrics(classes[t] == c, counts[c] - 1, K)["rank_weighted_precision"]
                                for t, c in zip(top, classes)]))


def pooled_features(name: str, files: list[Path], flip: bool, p: float = 3.0) -> tuple[dict, float]:
    """{(layer, pooling): [n, c] pooled, not normalised} for every layer of LAYERS[name], and the
    seconds of model time."""
    import torch

    from udfs import cnn, images, pooling

    model = cnn.load_image_model(cnn.ImageModelSpec(name))
    captured: dict = {}
    for layer in LAYERS[name]:
        if layer:
            model.net.get_submodule(layer).register_forward_hook(
                lambda _m, _i, out, layer=layer: captured.__setitem__(layer, out))
    pixels = np.stack([images.load_pixels(f.read_bytes(), model.prep) for f in files])
    out: dict = {}
    start = time.perf_counter()
    with torch.inference_mode():
        for block in range(0, len(pixels), 8):
            x = torch.from_numpy(pixels[block:block + 8]).permute(0, 3, 1, 2).float()
            x = (x - 127.5) / 127.5  # mean = std = 0.5 (the Lite family)
            parts = []
            for view in ([x, x.flip(3)] if flip else [x]):
                captured[""] = model.net.extract_features(view)
                parts.append({(layer, kind): pooling.pool(captured[layer], kind, p).numpy()
                              for layer in LAYERS[name] for kind in ("avg", "gem")})
            for key in parts[0]:
                out.setdefault(key, []).append(sum(part[key] for part in parts))
    seconds = time.perf_counter() - start
    return {key: np.concatenate(value) for key, value in out.items()}, seconds


def normalise(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def whiten(x: np.ndarray, dim: int = 0, shrinkage: float = 0.0) -> np.ndarray:
    from udfs import whitening

    return whitening.apply(whitening.fit(whitening.partial_sums([x]), dim, shrinkage), x)


def grid(folder: Path, log) -> list[dict]:
    """Every row: model, layer, pooling, flip, concat, whitening, P@15, model seconds per image."""
    files, classes = iconic_classes(folder)
    rows = []
    for name in LAYERS:
        for flip in (False, True):
            feats, seconds = pooled_features(name, files, flip)
            per_image = seconds / len(files)
            for (layer, kind), x in feats.items():
                base = dict(model=name, layer=layer or "final", pooling=kind, flip=flip, s_per_image=per_image)
                x = normalise(x)
                rows.append(dict(base, concat="", whitening="", p15=rank_weighted_p15(x, classes)))
                if layer == "":
                    for block in LAYERS[name][:2]:
                        cat = normalise(np.hstack([x, normalise(feats[(block, kind)])]))
                        rows.append(dict(base, concat=block, whitening="", p15=rank_weighted_p15(cat, classes)))
                    for dim, shrink in ((0, 0.0), (0, 0.5), (0, 0.9), (128, 0.5), (64, 0.5)):
                        rows.append(dict(base, concat="", whitening=f"dim {dim or 'all'}, shrinkage {shrink:g}",
                                         p15=rank_weighted_p15(whiten(x, dim, shrink), classes)))
            log(f"{name} flip={flip}: {per_image * 1000:.0f} ms/image; best "
                f"{max(r['p15'] for r in rows if r['model'] == name and r['flip'] == flip):.1f}")
    return rows


def table_lines(rows: list[dict]) -> list[str]:
    """Markdown: the layer × pooling × flip table per model, then concatenation and whitening rows."""
    lines = ["| model | layer | avg | gem3 | avg + flip | gem3 + flip | model ms/image (flip: x2) |",
             "|---|---|---|---|---|---|---|"]
    plain = {(r["model"], r["layer"], r["pooling"], r["flip"]): r for r in rows if not r["concat"] and not r["whitening"]}
    for name in LAYERS:
        for layer in [layer or "final" for layer in LAYERS[name]]:
            cells = [f"{plain[(name, layer, kind, flip)]['p15']:.1f}" for flip in (False, True) for kind in ("avg", "gem")]
            ms = plain[(name, layer, "avg", False)]["s_per_image"] * 1000
            lines.append(f"| {name} | {layer} | {' | '.join(cells)} | {ms:.0f} |")
    lines += ["", "Final features concatenated with a block (each part L2-normalised, then the whole), and PCA "
              "whitening learnt on the 200 images (udfs.whitening; dim = components kept):", "",
              "| model | pooling | flip | extra | rank-weighted P@15 |", "|---|---|---|---|---|"]
    for r in rows:
        if r["concat"] or r["whitening"]:
            extra = f"concat {r['concat']}" if r["concat"] else f"whitening, {r['whitening']}"
            lines.append(f"| {r['model']} | {r['pooling']} | {'yes' if r['flip'] else 'no'} | {extra} | {r['p15']:.1f} |")
    return lines


def main() -> None:
    """`python bench/retrieval_grid.py [--json FILE]`: measure, print and write the BENCHMARKS.md section
    (or, with --from-json, write the section from a saved run's rows)."""
    import argparse
    import datetime
    import sys

    root = Path(__file__).resolve().parent.parent
    sys.path.insert(0, str(root))
    from bench.benchmarks_md import update_section
    from bench.similarity import ICONIC, machine

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="also save the rows here")
    parser.add_argument("--from-json", help="write the section from rows saved by --json")
    args = parser.parse_args()
    if args.from_json:
        rows = json.loads(Path(args.from_json).read_text())
    else:
        rows = grid(ICONIC, print)
        if args.json:
            Path(args.json).write_text(json.dumps(rows))
    lines = ["## bench/retrieval_grid.py", "",
             f"Command: `.venv/bin/python bench/retrieval_grid.py`; {datetime.date.today()}; {machine()}, shared "
             "with other jobs (model times are indicative).", "",
             "iconic200, rank-weighted P@15 (x100) of each image's 15 nearest others by cosine, descriptors as "
             "`embed-images` computes them (`udfs.pooling`), by model, layer, pooling and flip averaging:", "",
             *table_lines(rows), ""]
    update_section(root / "BENCHMARKS.md", lines[0], "\n".join(lines[2:]))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
