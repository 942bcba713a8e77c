"""Index shards: filling a copy of the trained index from blocks, exact top-k, merging shards."""
from __future__ import annotations

import os
from typing import Iterable, Iterator

import numpy as np

from index import factory, store

Block = tuple[np.ndarray, np.ndarray]  # (int64 ids [n], float32 vectors [n, dim])


def serialize(index: "object") -> bytes:
    import faiss

    return faiss.serialize_index(index).tobytes()


def deserialize(data: bytes) -> "object":
    import faiss

    return faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))


def shard_name(number: int) -> str:
    return f"shard-{number:05d}.faiss"


def fill(trained: bytes, blocks: Iterable[Block]) -> "object":
    """A copy of the trained empty index holding every (id, vector) of `blocks`."""
    index = deserialize(trained)
    for ids, vectors in blocks:
        index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32),
                           np.ascontiguousarray(ids, dtype=np.int64))
    return index


def exact_topk(queries: np.ndarray, blocks: Iterable[Block], k: int, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k of `queries` over the vectors of `blocks`: (scores [q, k], ids [q, k]; -1 = none)."""
    scan = ExactTopK(queries, k, metric)
    for ids, vectors in blocks:
        scan.add(ids, vectors)
    return scan.result()


class ExactTopK:
    """The exact top-k of fixed queries, folded over blocks of vectors as they pass: one fold
    (`merge_topk`) for a shard's ground truth, a scan of a table and the merge of partitions' results
    (faiss `knn_ground_truth` keeps one result heap the same way)."""

    def __init__(self, queries: np.ndarray, k: int, metric: str):
        self.queries = np.ascontiguousarray(queries, dtype=np.float32)
        self.k, self.metric = k, metric
        self.best: tuple[np.ndarray, np.ndarray] | None = None

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Folds in one block: int64 ids [n], float32 vectors [n, dim]."""
        import faiss

        if not len(ids):
            return
        scores, positions = faiss.knn(self.queries, np.ascontiguousarray(vectors, dtype=np.float32),
                                      min(self.k, len(ids)), metric=factory.metric_type(self.metric))
        part = (scores, np.where(positions >= 0, ids[np.maximum(positions, 0)], -1))
        self.best = part if self.best is None else merge_topk([self.best, part], self.k, self.metric)

    def passing(self, blocks: Iterable[Block]) -> Iterator[Block]:
        """`blocks` unchanged, each folded in as it passes (so one pass can also fill a shard)."""
        for ids, vectors in blocks:
            self.add(ids, vectors)
            yield ids, vectors

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """(scores [q, k], ids [q, k]), padded with -inf / +inf and id -1 where fewer than k were seen."""
        if self.best is None:
            fill_value = -np.inf if self.metric == "ip" else np.inf
            return (np.full((len(self.queries), self.k), fill_value, np.float32),
                    np.full((len(self.queries), self.k), -1, np.int64))
        return _pad(self.best, self.k, self.metric)


def merge_topk(parts: list[tuple[np.ndarray, np.ndarray]], k: int, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """The best k per row over several partial results; ties broken by id so merges are deterministic."""
    scores = np.concatenate([p[0] for p in parts], axis=1)
    ids = np.concatenate([p[1] for p in parts], axis=1)
    key = -scores if metric == "ip" else scores
    key = np.where(ids < 0, np.inf, key)
    order = np.lexsort((ids, key), axis=1)[:, :k]
    rows = np.arange(len(scores))[:, None]
    return _pad((scores[rows, order], ids[rows, order]), k, metric)


def merge_partial(scores: np.ndarray, ids: np.ndarray, k: int, metric: str,
                  own: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The best k per row of partial top-k laid side by side (scores [q, m], ids [q, m]: several shards'
    results for the same queries; id -1 = none), each query's `own` id [q] dropped when given (a query
    excluding itself). Returns (scores [q, k], ids [q, k]), the valid ids first, ties by id (merge_topk)."""
    if own is not None:
        ids = np.where(ids == own[:, None], -1, ids)
    return merge_topk([(scores, ids)], k, metric)


def _pad(result: tuple[np.ndarray, np.ndarray], k: int, metric: str) -> tuple[np.ndarray, np.ndarray]:
    scores, ids = result
    if scores.shape[1] >= k:
        return scores[:, :k].astype(np.float32), ids[:, :k].astype(np.int64)
    missing = k - scores.shape[1]
    fill_value = -np.inf if metric == "ip" else np.inf
    return (np.hstack([scores, np.full((len(scores), missing), fill_value)]).astype(np.float32),
            np.hstack([ids, np.full((len(ids), missing), -1)]).astype(np.int64))


def read_shards(uris: list[str]) -> Iterator["object"]:
    for uri in uris:
        yield deserialize(store.read_bytes(uri))


def merge_in_memory(trained: bytes, shards: Iterable["object"]) -> "object":
    """One index holding every shard. Measured peak: about 2x the shards' total size (the merged lists
    grow by reallocation); use merge_on_disk when that does not fit."""
    return merge_into(deserialize(trained), shards)


def merge_into(merged: "object", shards: Iterable["object"]) -> "object":
    """Moves every shard's vectors into `merged` (same trained state) and returns it."""
    for shard in shards:
        if factory.is_ivf(merged):
            import faiss

            target = faiss.extract_index_ivf(merged)
            target.merge_from(faiss.extract_index_ivf(shard), 0)
            merged.ntotal = target.ntotal
        else:
            merged.merge_from(shard)
    return merged


def merge_files(first: "object", paths: list[str]) -> "object":
    """`first` (a loaded shard) with the vectors of the shard files at the local `paths` appended in order: the
    same index as merge_into(first, the shards read whole), with less copying. An IVF shard is memory-mapped
    (faiss IO_FLAG_MMAP, as faiss.contrib.ondisk reads shards) and its inverted lists appended list by list
    (InvertedLists.add_entries): each vector is copied once, from the page cache, into `first`'s lists, with
    no serialized or deserialized copy of the shard. Other kinds (Flat) are read whole and merged with
    merge_from."""
    import faiss

    if not factory.is_ivf(first):
        return merge_into(first, (faiss.read_index(path) for path in paths))
    target = faiss.extract_index_ivf(first)
    for path in paths:
        shard = faiss.read_index(path, faiss.IO_FLAG_MMAP)  # referenced while its lists are read
        source = faiss.extract_index_ivf(shard)
        target.check_compatible_for_merge(source)  # the same trained state (faiss raises otherwise)
        lists = source.invlists
        for number in range(target.nlist):
            if size := lists.list_size(number):
                target.invlists.add_entries(number, size, lists.get_ids(number), lists.get_codes(number))
        target.ntotal += source.ntotal
        del source, shard
    first.ntotal = target.ntotal
    return first


def merge_on_disk(trained: bytes, shard_paths: list[str], ivfdata_path: str) -> "object":
    """IVF inverted lists merged into one `.ivfdata` file; shards are memory-mapped, RAM stays bounded."""
    from faiss.contrib.ondisk import merge_ondisk

    merged = deserialize(trained)
    merge_ondisk(merged, shard_paths, ivfdata_path)
    return merged


def write_index(index: "object", path: str) -> None:
    """Writes to a local path (on-disk IVF keeps its `.ivfdata` beside it)."""
    import faiss

    os.makedirs(os.path.dirname(path), exist_ok=True)
    faiss.write_index(index, path)
