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


PLATEAU = 0.001  # a shard's ladder stops when a doubling of nprobe gains less recall than this


def partial_topk(index: "object", queries: np.ndarray, k: int, nprobes: list[int], ef_search: int,
                 exact: Result) -> list[Result]:
    """One shard's approximate top-k of `queries` [q, dim] at each of `nprobes` (ascending): a list of
    (scores [q, k], ids [q, k]; -1 = none), one per nprobe. `exact` is the shard's own exact top-k.

    IVF search at a larger nprobe probes a superset of the lists, so once the shard's result equals its
    exact top-k (ties counted, searcher.recall_at_k) every larger nprobe gives it too: `exact` is reused
    and the shard is not searched again; a flat shard is not searched at all. A compressed shard (PQ, SQ:
    factory.is_compressed) never equals its exact top-k: its ladder stops when its own recall@k gains less than PLATEAU over a
    step (a doubling of nprobe), and that result is reused for every larger nprobe (the same object: a
    later step would only add what quantisation loses anyway; index.recall.tune then picks the smaller
    nprobe). Merging the shards' partials at one nprobe (shards.merge_topk) gives the top-k of the merged
    index at that nprobe (one trained quantizer), ties aside."""
    if factory.is_exact(index):  # a flat shard's top-k is its exact top-k: nothing to search again
        return [exact] * len(nprobes)
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    found: list[Result] = []
    own, done, lossy = -1.0, False, factory.is_compressed(index)
    for nprobe in nprobes:
        if done:
            found.append(exact if own >= 1.0 else found[-1])
            continue
        factory.set_search_params(index, nprobe, ef_search)
        result = index.search(queries, k)
        before, own = own, recall_at_k(exact, result, k)
        done = own >= 1.0 or (lossy and bool(found) and own - before < PLATEAU)
        found.append(result)
    return found


def tune(exact: Result, partials: list[list[Result]], nprobes: list[int], k: int, metric: str,
         target: float) -> tuple[float, int]:
    """(recall@k, nprobe): the smallest nprobe of `nprobes` whose merged partial top-k reaches `target`
    recall@k against `exact` (the merged exact top-k); when none does, the smallest nprobe with the best
    recall (a larger one would search longer for nothing). `partials`: per shard, a list aligned with
    `nprobes` (partial_topk's result)."""
    best = (-1.0, nprobes[-1])
    for position, nprobe in enumerate(nprobes):
        merged = shards.merge_topk([shard[position] for shard in partials], k, metric)
        recall = recall_at_k(exact, merged, k)
        if recall >= target:
            return recall, nprobe
        if recall > best[0]:
            best = (recall, nprobe)
    return best


class Partials:
    """The recall queries' exact top-k and approximate top-k at each nprobe, folded over shards one at a time
    (shards.merge_topk; merging is associative, ties broken by id): the driver holds one merged result per
    nprobe, not one per shard, so its memory does not grow with the shards (at 50 shards, 1,000 queries and
    12 nprobes, one per shard was 74 MiB). Stored per shard as a `.npz` (to_bytes) by the shard writer."""

    def __init__(self, k: int, metric: str):
        self.k, self.metric = k, metric
        self.exact: Result | None = None
        self.approx: list[Result] = []
        self.shards = 0

    def add(self, exact: Result, approx: list[Result]) -> None:
        """Folds in one shard's exact top-k (scores [q, k], ids [q, k]) and its partial_topk list."""
        if self.exact is None:
            self.exact, self.approx = exact, list(approx)
        else:
            self.exact = shards.merge_topk([self.exact, exact], self.k, self.metric)
            self.approx = [shards.merge_topk([a, b], self.k, self.metric) for a, b in zip(self.approx, approx)]
        self.shards += 1

    def add_bytes(self, data: bytes) -> None:
        """Folds in one shard's partials as `to_bytes` wrote them."""
        import io

        with np.load(io.BytesIO(data)) as found:
            self.add((found["exact_scores"], found["exact_ids"]),
                     list(zip(found["approx_scores"], found["approx_ids"])))

    @staticmethod
    def to_bytes(exact: Result, approx: list[Result]) -> bytes:
        """One shard's partials as `.npz` bytes: exact scores / ids [q, k], approximate [len(approx), q, k]."""
        import io

        out = io.BytesIO()
        np.savez(out, exact_scores=exact[0], exact_ids=exact[1], approx_scores=np.stack([a[0] for a in approx]),
                 approx_ids=np.stack([a[1] for a in approx]))
        return out.getvalue()

    def tune(self, nprobes: list[int], n_queries: int, target: float) -> tuple[float, int]:
        """`tune` of the folded partials; with no shard folded (nothing indexed) every query finds nothing,
        as a search of the empty index does."""
        if self.exact is None:
            empty = (np.full((n_queries, self.k), np.nan, np.float32), np.full((n_queries, self.k), -1, np.int64))
            return tune(empty, [[empty] * len(nprobes)], nprobes, self.k, self.metric, target)
        return tune(self.exact, [self.approx], nprobes, self.k, self.metric, target)
