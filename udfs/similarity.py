"""Pure functions behind the similarity jobs: query expansion, retrieval metrics."""
from __future__ import annotations

import numpy as np


def expand_queries(queries: np.ndarray, neighbours: np.ndarray, scores: np.ndarray, top: int,
                   alpha: float) -> np.ndarray:
    """Query expansion: each query averaged with its `top` neighbours, L2-normalised.

    queries [n, d], neighbours [n, m, d] (m >= top), scores [n, m]. alpha = 0 is average query
    expansion (AQE); alpha > 0 weights neighbour i by max(score_i, 0)^alpha (alpha-QE).
    """
    nb, sc = neighbours[:, :top], np.maximum(scores[:, :top], 0.0)
    weights = np.ones_like(sc) if alpha == 0 else sc ** alpha
    expanded = queries + np.einsum("nm,nmd->nd", weights, nb)
    norms = np.linalg.norm(expanded, axis=1, keepdims=True)
    return (expanded / np.where(norms > 0, norms, 1)).astype(np.float32)


def query_metrics(hits: np.ndarray, relevant: int, k: int) -> dict[str, float]:
    """Retrieval metrics of one query from its hit flags by rank (hits[i] for rank i, 0-based).

    precision@k, rank-weighted precision@k (the prototype's: hit at rank i weighted (k - i) / k,
    normalised by the total weight), average precision@k and recall@k (`relevant` = how many
    relevant items exist besides the query itself).
    """
    h = np.zeros(k)
    h[:min(k, len(hits))] = np.asarray(hits[:k], dtype=float)
    weights = (k - np.arange(k)) / k
    cumulative = np.cumsum(h) / (np.arange(k) + 1)
    denominator = min(relevant, k)
    return {
        "precision": float(h.sum() / k),
        "rank_weighted_precision": float((h * weights).sum() / weights.sum()),
        "average_precision": float((cumulative * h).sum() / denominator) if denominator else 0.0,
        "recall": float(h.sum() / relevant) if relevant else 0.0,
    }
