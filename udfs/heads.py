"""Label heads: zero-shot, Zmap, Wmap, logistic and centroid scorers over embeddings (with co-training's TF-IDF
view of the texts), as plain arrays."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from udfs.hashing import file_sha256
from udfs.lexical import LexicalView
from udfs.logistic import class_rows

FORMAT_VERSION = 1
COSINE, SOFTMAX = "cosine", "softmax"
LEXICAL_ARRAYS = ("terms", "idf", "weights", "bias")  # LexicalView's fields, saved as lexical_<name>


@dataclass
class Head:
    """Scores documents against labels.

    Documents [n, d] are multiplied by `projection` [d, m] (when set) and L2-normalised; scores are
    `docs @ classes.T` [n, c], plus `bias` and a softmax for logistic heads (probabilities), or
    cosines for the others. A co-trained head (`lexical` set, always a softmax head) averages those
    probabilities with its TF-IDF view's of each row's text.
    """

    method: str
    labels: list[str]
    classes: np.ndarray                   # [c, m] float32
    projection: np.ndarray | None = None  # [d, m] float32
    bias: np.ndarray | None = None        # [c] float32; set for softmax heads
    embedding_model: str = ""
    params: dict = field(default_factory=dict)
    lexical: LexicalView | None = None    # co-training's TF-IDF view of the texts

    @property
    def kind(self) -> str:
        return SOFTMAX if self.bias is not None else COSINE

    @property
    def dim(self) -> int:
        return int(self.projection.shape[0] if self.projection is not None else self.classes.shape[1])

    def scores(self, docs: np.ndarray, texts: list[str | None] | None = None) -> np.ndarray:
        """[n, d] embeddings → [n, c] scores (cosines, or probabilities for softmax heads). With a TF-IDF
        view, each row whose text is given (`texts` [n], None for a row without one) scores the mean of
        the two views' probabilities; the other rows, the embeddings' alone."""
        x = np.asarray(docs, dtype=np.float32)
        if self.projection is not None:
            x = x @ self.projection
        x = normalise(x)
        logits = x @ self.classes.T
        if self.bias is None:
            return logits
        logits = logits + self.bias
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(axis=1, keepdims=True)
        if self.lexical is not None and texts is not None:
            rows = [i for i, text in enumerate(texts) if text is not None]
            if rows:
                p[rows] = (p[rows] + self.lexical.probabilities([texts[i] for i in rows])) / 2
        return p


def normalise(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.where(norms > 0, norms, 1)).astype(np.float32)


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """([n, k] label indices, [n, k] scores), best first; ties keep label order."""
    k = min(k, scores.shape[1])
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(scores, order, axis=1)


# ---- fitting -------------------------------------------------------------------------------

def zero_shot(label_vectors: list[np.ndarray]) -> np.ndarray:
    """Per label, its template embeddings [t, d] averaged and renormalised → [c, d]."""
    return normalise(np.stack([normalise(v).mean(axis=0) for v in label_vectors]))


def fit_zmap(sentence_vectors: np.ndarray, word_vectors: np.ndarray, alpha: float) -> np.ndarray:
    """Ridge map Z [d, w] from sentence space to word-vector space, fitted on the same words'
    embeddings in both: argmin ||S Z - W||² + alpha ||Z||² = (SᵀS + alpha I)⁻¹ SᵀW (rows normalised)."""
    s = normalise(sentence_vectors).astype(np.float64)
    w = normalise(word_vectors).astype(np.float64)
    gram = s.T @ s + alpha * np.eye(s.shape[1])
    return np.linalg.solve(gram, s.T @ w).astype(np.float32)


def fit_wmap(docs: np.ndarray, targets: np.ndarray, lam: float) -> np.ndarray:
    """Few-shot map M [m, m] taking each example's (mapped, normalised) embedding towards its label's
    vector, regularised towards the identity: argmin ||D M - T||² + lam ||M - I||²
    = (DᵀD + lam I)⁻¹ (DᵀT + lam I). Applied as `docs @ M` (the prototype applied it transposed)."""
    d = normalise(docs).astype(np.float64)
    t = normalise(targets).astype(np.float64)
    eye = np.eye(d.shape[1])
    return np.linalg.solve(d.T @ d + lam * eye, d.T @ t + lam * eye).astype(np.float32)


def fit_logreg(x: np.ndarray, y: np.ndarray, n_classes: int, c: float, seed: int,
               sample_weight: np.ndarray | None = None) -> tuple:
    """Multinomial logistic regression (scikit-learn) on normalised embeddings [n, d] with int labels
    [n] → (weights [c, d], bias [c]). Class-balanced: each example weighs n / (classes × its class's
    count), so a label with 1 example against others with 3 is still predicted (unweighted, its prior
    and the regularisation drowned it: 4/6 right on such a set, 6/6 balanced); `sample_weight` [n]
    multiplies that (a weight of k counts a row as k copies of it)."""
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=c, max_iter=2000, random_state=seed, class_weight="balanced")
    model.fit(normalise(x), y, sample_weight=sample_weight)
    return class_rows(model, n_classes)


def scarce_classes(y: np.ndarray, n_classes: int, share: float = 0.5) -> tuple[list[tuple[int, int]], float]:
    """([(class, its count)] of the classes with examples but fewer than `share` × the median, the
    median count over the classes that have any): the classes a few-shot head learns too little about."""
    counts = np.bincount(np.asarray(y, dtype=np.int64), minlength=n_classes)
    median = float(np.median(counts[counts > 0])) if counts.any() else 0.0
    return [(int(c), int(n)) for c, n in enumerate(counts) if 0 < n < share * median], median


def centroids(x: np.ndarray, y: np.ndarray, n_classes: int) -> np.ndarray:
    """Normalised mean of each class's normalised examples [c, d]."""
    x = normalise(x)
    return normalise(np.stack([x[y == c].mean(axis=0) for c in range(n_classes)]))


# ---- the artefact --------------------------------------------------------------------------

def save(head: Head, folder: str, extra_files: tuple[str, ...] = ()) -> None:
    """folder/head.npz (arrays, no pickle) + manifest.json (method, labels, model, sha256 of files)."""
    os.makedirs(folder, exist_ok=True)
    arrays = {"classes": head.classes}
    if head.projection is not None:
        arrays["projection"] = head.projection
    if head.bias is not None:
        arrays["bias"] = head.bias
    if head.lexical is not None:
        arrays.update({f"lexical_{name}": getattr(head.lexical, name) for name in LEXICAL_ARRAYS})
    np.savez(os.path.join(folder, "head.npz"), **arrays)
    files = {name: file_sha256(os.path.join(folder, name)) for name in ("head.npz", *extra_files)}
    manifest = {"format_version": FORMAT_VERSION, "method": head.method, "labels": head.labels,
                "embedding_model": head.embedding_model, "dim": head.dim, "kind": head.kind,
                "params": head.params, "files": files}
    Path(folder, "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))


def read_manifest(folder: str) -> dict:
    """A saved head's manifest; ValueError when `folder` is not a head this version reads."""
    manifest_path = Path(folder, "manifest.json")
    if not manifest_path.is_file():
        raise ValueError(f"{folder!r} holds no manifest.json; it is not a saved label head")
    manifest = json.loads(manifest_path.read_text())
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{folder!r}: label head format {manifest.get('format_version')}, "
                         f"this sparkamp reads {FORMAT_VERSION}")
    return manifest


def load(folder: str) -> Head:
    """The head saved in `folder`, after checking its format version and every file's sha256."""
    manifest = read_manifest(folder)
    for name, digest in manifest["files"].items():
        if file_sha256(os.path.join(folder, name)) != digest:
            raise ValueError(f"{folder!r}: {name} does not match the manifest's sha256; refit the head")
    with np.load(os.path.join(folder, "head.npz"), allow_pickle=False) as arrays:
        lexical = LexicalView(*(arrays[f"lexical_{name}"] for name in LEXICAL_ARRAYS)) \
            if "lexical_terms" in arrays else None
        return Head(manifest["method"], list(manifest["labels"]), arrays["classes"],
                    arrays["projection"] if "projection" in arrays else None,
                    arrays["bias"] if "bias" in arrays else None,
                    manifest["embedding_model"], dict(manifest["params"]), lexical)

