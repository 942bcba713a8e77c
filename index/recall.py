"""recall@k of an index measured from each shard's partial top-k, merged: no process holds the whole index."""
from __future__ import annotations

import numpy as np

from index import factory, shards
from index.searcher import Result, recall_at_k


def nprobe_candidates(nlist: int, nprobe: int) -> list[int]:
    """The nprobe values tried, ascending: the given one, or (0) 1, 2, 4, ... below nlist and nlist itself;
    [0] for an index without inverted lists (Flat, HNSW: 0 = nothing to set)."""
    if nprobe or not nlist:
        return [nprobe]
    return [p for p in (2 ** i for i in range(31)) if p < nlist] + [nlist]


def partial_topk(index: "object", queries: np.ndarray, k: int, nprobes: list[int], ef_search: int,
                 exact: Result) -> list[Result]:
    """One shard's approximate top-k of `queries` [q, dim] at each of `nprobes` (ascending): a list of
    (scores [q, k], ids [q, k]; -1 = none), one per nprobe. `exact` is the shard's own exact top-k.

    IVF search at a larger nprobe probes a superset of the lists, so once the shard's result equals its
    exact top-k (ties counted, searcher.recall_at_k) every larger nprobe gives it too: `exact` is reused
    and the shard is not searched again; a flat shard is not searched at all. Merging the shards'
    partials at one nprobe (shards.merge_topk) gives the top-k of the merged index at that nprobe (one
    trained quantizer), ties aside."""
    if factory.is_exact(index):  # a flat shard's top-k is its exact top-k: nothing to search again
        return [exact] * len(nprobes)
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    found: list[Result] = []
    for nprobe in nprobes:
        if found and recall_at_k(exact, found[-1], k) >= 1.0:
            found.append(exact)
            continue
        factory.set_search_params(index, nprobe, ef_search)
        scores, ids = index.search(queries, k)
        found.append((scores, ids))
    return found


def tune(exact: Result, partials: list[list[Result]], nprobes: list[int], k: int, metric: str,
         target: float) -> tuple[float, int]:
    """(recall@k, nprobe): the smallest nprobe of `nprobes` whose merged partial top-k reaches `target`
    recall@k against `exact` (the merged exact top-k), or the last one. `partials`: per shard, a list
    aligned with `nprobes` (partial_topk's result)."""
    recall, chosen = 0.0, nprobes[-1]
    for position, chosen in enumerate(nprobes):
        merged = shards.merge_topk([shard[position] for shard in partials], k, metric)
        recall = recall_at_k(exact, merged, k)
        if recall >= target:
            break
    return recall, chosen
