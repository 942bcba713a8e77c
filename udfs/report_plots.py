"""Report plots: a 2-D projection of embeddings, a categorical palette, and the map as inline SVG."""
from __future__ import annotations

import html
import importlib.util

import numpy as np

# Tableau 10 then 10 lighter tones; labels past 20 share grey
PALETTE = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
           "#9c755f", "#bab0ac", "#1f77b4", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5",
           "#c49c94", "#f7b6d2", "#dbdb8d", "#9edae5")
OTHER = "#888888"
UNLABELLED = "#cccccc"


def project_2d(vectors: np.ndarray, seed: int = 0) -> tuple[np.ndarray, str]:
    """[n, dim] vectors → ([n, 2] coordinates scaled to [0, 1], the method's name).

    UMAP when `umap-learn` is installed (not a dependency), else PCA: the top two principal axes of
    the centred sample, by SVD. Fewer than 3 points or a 1-d space get what they can.
    """
    vectors = np.asarray(vectors, np.float64)
    n = len(vectors)
    if n == 0:
        return np.zeros((0, 2)), "pca"
    if n >= 10 and importlib.util.find_spec("umap") is not None:
        import umap

        coords = umap.UMAP(n_components=2, random_state=seed).fit_transform(vectors)
        method = "umap"
    else:
        centred = vectors - vectors.mean(axis=0)
        _, _, axes = np.linalg.svd(centred, full_matrices=False)
        coords = centred @ axes[:2].T
        method = "pca"
    coords = np.pad(coords, ((0, 0), (0, 2 - coords.shape[1]))) if coords.shape[1] < 2 else coords
    low, span = coords.min(axis=0), np.ptp(coords, axis=0)
    return (coords - low) / np.where(span > 0, span, 1.0), method


def palette(labels: list[str | None]) -> dict[str, str]:
    """{label: colour}: the most frequent labels get the 20 distinct colours, the rest grey."""
    counts: dict[str, int] = {}
    for label in labels:
        if label is not None:
            counts[label] = counts.get(label, 0) + 1
    ranked = sorted(counts, key=lambda lb: (-counts[lb], lb))
    return {lb: PALETTE[i] if i < len(PALETTE) else OTHER for i, lb in enumerate(ranked)}


def colour_of(label: str | None, colours: dict[str, str]) -> str:
    return UNLABELLED if label is None else colours.get(label, OTHER)


def scatter_svg(coords: np.ndarray, fills: list[str], width: int = 900, height: int = 600) -> str:
    """The map: one circle a point, `data-i` = the point's index (the page's script shows it on hover)."""
    pad = 12
    xs = pad + coords[:, 0] * (width - 2 * pad) if len(coords) else []
    ys = pad + (1 - coords[:, 1]) * (height - 2 * pad) if len(coords) else []
    dots = "".join(f'<circle data-i="{i}" cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{html.escape(fill)}"/>'
                   for i, (x, y, fill) in enumerate(zip(xs, ys, fills)))
    return (f'<svg class="map" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
            f'role="img" aria-label="2-D map of the embeddings">'
            f'<rect width="{width}" height="{height}" fill="#fafafa" stroke="#ddd"/>{dots}</svg>')


def shade(value: float, top: float) -> str:
    """A blue background of strength value/top, for heat-map cells and bars (CSS colour)."""
    alpha = 0.0 if top <= 0 else max(0.0, min(1.0, value / top))
    return f"rgba(33,102,172,{0.08 + 0.82 * alpha:.2f})" if value else "transparent"
