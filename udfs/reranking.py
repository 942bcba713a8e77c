"""Re-ranking of a search's candidates: query expansion (average, alpha) and diffusion, on one block of
queries at a time (memory: block × m × m floats for m candidates per query)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from udfs.similarity import expand_queries

METHODS = ("none", "average-qe", "alpha-qe", "diffusion")
# γ = 3 is Iscen et al. 2017's; their α = 0.99 lets a small candidate graph's hubs outweigh the query
# (measured: in a 12-photo index an astronaut query's near-duplicate lost to moon.png); 0.9 keeps the query's
# seeds in front and measured as well on iconic200 (BENCHMARKS.md)
DIFFUSION_ALPHA, DIFFUSION_GAMMA = 0.9, 3.0
CG_ITERATIONS = 20
BLOCK = 128  # queries whose m × m candidate graphs are held at once


@dataclass(frozen=True)
class Rerank:
    """How a search's first candidates are re-ordered; the names are the search job's config keys."""

    method: str = "none"   # one of METHODS
    top: int = 100         # rerank_top: candidates re-ranked per query (the search fetches max(k, top))
    qe_top: int = 5        # how many first candidates are averaged in (QE) or seed the diffusion
    qe_alpha: float = 3.0  # alpha-QE: candidate i weighs max(similarity_i, 0) ** alpha
    graph_k: int = 10      # diffusion: each candidate's mutual nearest neighbours among the candidates


def rerank(opts: Rerank, queries: np.ndarray, ids: np.ndarray, vectors: np.ndarray,
           scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Re-ordered (scores [n, m], ids [n, m]) of each query's m candidates, best first.

    queries [n, d] and candidate vectors [n, m, d] L2-normalised float32, ids [n, m] int64 (-1 = no
    candidate: kept last), scores [n, m] the search's similarities. The returned scores are the method's:
    cosine to the expanded query for QE, the diffusion value for diffusion (only their order means
    something). method "none" returns the input."""
    if opts.method == "none":
        return scores, ids
    out_scores = np.empty(scores.shape, np.float32)
    for start in range(0, len(queries), BLOCK):
        part = slice(start, start + BLOCK)
        if opts.method == "diffusion":
            out_scores[part] = diffusion_scores(vectors[part], scores[part], opts.graph_k, opts.qe_top)
        else:
            alpha = opts.qe_alpha if opts.method == "alpha-qe" else 0.0
            expanded = expand_queries(queries[part], vectors[part], scores[part], min(opts.qe_top, ids.shape[1]),
                                      alpha)
            out_scores[part] = np.einsum("nd,nmd->nm", expanded, vectors[part])
    out_scores = np.where(ids >= 0, out_scores, -np.inf)
    order = np.argsort(-out_scores, axis=1, kind="stable")
    return np.take_along_axis(out_scores, order, 1), np.take_along_axis(ids, order, 1)


def diffusion_scores(vectors: np.ndarray, scores: np.ndarray, graph_k: int, seeds: int) -> np.ndarray:
    """Diffusion on each query's candidate graph, [n, m, d] and [n, m] → [n, m] float32.

    Iscen, Tolias, Avrithis, Furon, Chum, "Efficient Diffusion on Region Manifolds: Recovering Small
    Objects with Compact CNN Representations" (CVPR 2017): affinities a_ij = max(x_iᵀx_j, 0)^γ between
    mutual graph_k-nearest candidates, S = D^-1/2 A D^-1/2, f solving (I - αS) f = y (α = 0.9) by conjugate
    gradient with y_i = max(qᵀx_i, 0)^γ for the query's `seeds` first candidates and 0 for the others (the
    paper's y is the query's k nearest neighbours). Here the graph is each query's candidates only (the
    paper's is the whole database, built offline), so the cost is bounded by m per query and needs no
    second search. A zero candidate vector (a missing id) gets no edge and scores from y alone."""
    n, m, _ = vectors.shape
    sims = np.einsum("nid,njd->nij", vectors, vectors)
    idx = np.arange(m)
    sims[:, idx, idx] = -np.inf  # no self loops
    kth = np.sort(sims, axis=2)[:, :, max(m - min(graph_k, m - 1), 0)][:, :, None] if m > 1 else sims
    near = sims >= kth
    affinity = np.where(near & near.transpose(0, 2, 1), np.maximum(sims, 0) ** DIFFUSION_GAMMA, 0.0)
    degree = affinity.sum(axis=2)
    inv = np.where(degree > 0, 1 / np.sqrt(np.where(degree > 0, degree, 1)), 0.0)
    system = -DIFFUSION_ALPHA * inv[:, :, None] * affinity * inv[:, None, :]
    system[:, idx, idx] += 1.0
    y = np.maximum(scores, 0).astype(np.float64) ** DIFFUSION_GAMMA
    y[:, seeds:] = 0.0
    return conjugate_gradient(system, y).astype(np.float32)


def conjugate_gradient(a: np.ndarray, b: np.ndarray, iterations: int = CG_ITERATIONS) -> np.ndarray:
    """x with a x ≈ b for a batch of symmetric positive-definite systems, a [n, m, m], b [n, m] → [n, m]
    (plain CG, a fixed number of steps: Iscen et al. stop at 20)."""
    x = np.zeros_like(b)
    r = b - np.einsum("nij,nj->ni", a, x)
    p, rr = r.copy(), np.einsum("ni,ni->n", r, r)
    for _ in range(iterations):
        ap = np.einsum("nij,nj->ni", a, p)
        step = rr / np.where(np.einsum("ni,ni->n", p, ap) > 0, np.einsum("ni,ni->n", p, ap), np.inf)
        x += step[:, None] * p
        r -= step[:, None] * ap
        new = np.einsum("ni,ni->n", r, r)
        p = r + (new / np.where(rr > 0, rr, np.inf))[:, None] * p
        rr = new
    return x
