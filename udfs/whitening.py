"""PCA whitening of embeddings: partial sums of blocks, the fit from those sums, and its application.

Jégou & Chum, "Negative evidence and co-occurrences in image retrieval: the benefit of PCA and whitening"
(ECCV 2012), as used after GeM in Radenović, Tolias, Chum (TPAMI 2018): x ↦ normalise(Λ^-1/2 Vᵀ (x - μ)),
Λ, V the leading eigenpairs of the embeddings' covariance. Pure numpy: the sums are computed per block
(a Spark partition, a test's array) and added, so no process holds the rows.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from udfs.hashing import file_sha256


@dataclass(frozen=True)
class Sums:
    """Sufficient statistics of a set of d-dim vectors: n, Σx [d] and Σxxᵀ [d, d], float64."""

    n: int
    total: np.ndarray
    outer: np.ndarray

    def __add__(self, other: "Sums") -> "Sums":
        return Sums(self.n + other.n, self.total + other.total, self.outer + other.outer)


def partial_sums(blocks: Iterable[np.ndarray]) -> Sums | None:
    """Sums of blocks of vectors ([m, d] float32 each); None when there is no row. Accumulated in float64:
    Σxxᵀ of a million unit vectors keeps ~12 significant digits."""
    sums = None
    for block in blocks:
        x = np.asarray(block, np.float64)
        if len(x):
            part = Sums(len(x), x.sum(axis=0), x.T @ x)
            sums = part if sums is None else sums + part
    return sums


@dataclass(frozen=True)
class Whitening:
    """A fitted whitening: (x - mean) @ projection, then L2-normalised; projection [d, k] = V Λ^-1/2 for
    the k leading eigenpairs (eigenvalues [k], descending, after shrinkage)."""

    mean: np.ndarray
    projection: np.ndarray
    eigenvalues: np.ndarray

    @property
    def dims(self) -> tuple[int, int]:
        return self.projection.shape


def fit(sums: Sums, dim: int = 0, shrinkage: float = 0.0) -> Whitening:
    """The whitening of the vectors whose `sums` are given.

    dim: how many leading components are kept (0 = every one the data spans: at most min(d, n - 1));
    shrinkage in [0, 1]: each eigenvalue λ becomes (1 - s) λ + s mean(λ) before inverting, so that
    directions of tiny variance (noise, or no data) are not blown up; 0 is plain PCA whitening, 1 only
    centres and rotates. ValueError when fewer than 2 vectors or dim > d."""
    d = len(sums.total)
    if sums.n < 2:
        raise ValueError(f"whitening needs at least 2 vectors, got {sums.n}")
    if not 0 <= dim <= d:
        raise ValueError(f"whiten_dim {dim} is not in 0..{d} (the embeddings' dim)")
    mean = sums.total / sums.n
    cov = sums.outer / sums.n - np.outer(mean, mean)
    values, vectors = np.linalg.eigh((cov + cov.T) / 2)
    order = np.argsort(values)[::-1]
    values, vectors = np.clip(values[order], 0, None), vectors[:, order]
    rank = int(np.count_nonzero(values > values[0] * 1e-9)) if values[0] > 0 else 0
    keep = min(dim or rank, rank or 1)
    values = (1 - shrinkage) * values + shrinkage * values[:max(rank, 1)].mean()
    values, vectors = values[:keep], vectors[:, :keep]
    # eigenvectors have no sign; fix one (largest entry positive) so that two fits of the same data agree
    signs = np.sign(vectors[np.abs(vectors).argmax(axis=0), np.arange(keep)])
    vectors = vectors * np.where(signs == 0, 1, signs)
    return Whitening(mean.astype(np.float32), (vectors / np.sqrt(values)).astype(np.float32),
                     values.astype(np.float32))


def apply(whitening: Whitening, x: np.ndarray) -> np.ndarray:
    """[n, d] vectors → [n, k] float32 whitened and L2-normalised (a zero row stays zero)."""
    out = (np.asarray(x, np.float32) - whitening.mean) @ whitening.projection
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return (out / np.where(norms > 0, norms, 1)).astype(np.float32)


# ---- the artefact: whitening.npz (arrays, no pickle) + manifest.json with their sha256 -----------------

FORMAT_VERSION = 1


def save(whitening: Whitening, folder: str, facts: dict) -> dict:
    """Writes folder/whitening.npz and manifest.json (format version, dims, sha256 of the arrays, and
    `facts`: model, source table, n, dim, shrinkage); returns the manifest."""
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "whitening.npz")
    np.savez(path, mean=whitening.mean, projection=whitening.projection, eigenvalues=whitening.eigenvalues)
    manifest = {"format_version": FORMAT_VERSION, "input_dim": whitening.dims[0], "output_dim": whitening.dims[1],
                "files": {"whitening.npz": file_sha256(path)}, **facts}
    Path(folder, "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
    return manifest


def load(folder: str) -> Whitening:
    """The whitening saved in `folder`; ValueError when it is missing, of another format, or a file does
    not match the manifest's sha256."""
    manifest_path = Path(folder, "manifest.json")
    if not manifest_path.is_file():
        raise ValueError(f"{folder!r} holds no manifest.json; it is not a saved whitening")
    manifest = json.loads(manifest_path.read_text())
    if manifest.get("format_version") != FORMAT_VERSION or "whitening.npz" not in manifest.get("files", {}):
        raise ValueError(f"{folder!r}: not a whitening of format {FORMAT_VERSION}")
    path = os.path.join(folder, "whitening.npz")
    if not os.path.isfile(path) or file_sha256(path) != manifest["files"]["whitening.npz"]:
        raise ValueError(f"{folder!r}: whitening.npz is missing or does not match the manifest's sha256")
    with np.load(path, allow_pickle=False) as arrays:
        return Whitening(arrays["mean"], arrays["projection"], arrays["eigenvalues"])

