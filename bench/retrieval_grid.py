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
