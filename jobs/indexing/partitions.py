"""The partition functions (mapInPandas) that scan and search an index: thin shells around `index.shards` and
`index.searcher`, and the helpers they share with the shard writer (jobs.indexing.shard_writer)."""
from __future__ import annotations

import hashlib
import json
from typing import Callable, Iterator

import numpy as np
import pandas as pd

from index import manifest, searcher, shards
from jobs.tables.ids import id_hash
from udfs import reranking
from udfs.batches import rebatch
from udfs.reranking import Rerank

SHARD_BLOCK_ROWS = 8192  # vectors added (and exactly scanned) per block: fewer, larger blocks are faster
NO_NEIGHBOURS = "no_neighbours"
Frames = Iterator[pd.DataFrame]


def faiss_id_column():
    """Stable int64 ids from the table's string ids (ids.id_hash: xxhash64, non-negative): any partitioning
    agrees."""
    return id_hash().alias("faiss_id")


def vectors_of(frame: pd.DataFrame) -> np.ndarray:
    return np.stack(frame["embedding"].to_numpy()).astype(np.float32, copy=False)


def exact_scan(spark, rows, queries: np.ndarray, k: int, metric: str) -> list[dict]:
    """Exact top-k of `queries` over every row, one result per partition (shard_writer's format)."""
    shipped = spark.sparkContext.broadcast(queries)

    def scan(frames: Frames) -> Frames:
        from udfs import cache

        cache.set_faiss_threads()
        found = shards.ExactTopK(shipped.value, k, metric)
        for frame in rebatch(frames, SHARD_BLOCK_ROWS):
            found.add(frame["faiss_id"].to_numpy(np.int64), vectors_of(frame))
        if found.best is not None:
            scores, ids = found.result()
            yield pd.DataFrame({"scores": [scores.tobytes()], "ids": [ids.tobytes()]})
    result = rows.select("faiss_id", "embedding").mapInPandas(scan, "scores binary, ids binary").collect()
    shipped.unpersist()
    return [r.asDict() for r in result]


def exact_from_shards(rows: list, n_queries: int, k: int, metric: str) -> tuple[np.ndarray, np.ndarray]:
    parts = [(np.frombuffer(r["scores"], np.float32).reshape(n_queries, k),
              np.frombuffer(r["ids"], np.int64).reshape(n_queries, k)) for r in rows]
    return shards.merge_topk(parts, k, metric)


def index_version(folder: str) -> str:
    """A digest of every file an index's manifest vouches for (driver side)."""
    digests = manifest.expected_sha256(manifest.read(folder))
    return hashlib.sha256(json.dumps(digests, sort_keys=True).encode()).hexdigest()


def searcher_fn(folder: str, k: int, exclude_self: bool, params: tuple[int, int],
                batch_size: int, rerank: Rerank = Rerank()) -> Callable[[Frames], Frames]:
    """A mapInPandas function: blocks of (id, embedding) → neighbours rows, k per query.

    Warm workers keep the loaded index across tasks; the key's version is the digest of the files
    the manifest lists, so an index rebuilt at the same path is reloaded."""
    version = index_version(folder)

    def search_partition(frames: Frames) -> Frames:
        from udfs import cache

        cache.set_faiss_threads()
        loaded = cache.get_latest(("index", folder, params), version, lambda: searcher.load(folder, *params))
        for block in rebatch(frames, batch_size):
            yield neighbours_frame(loaded, block, k, exclude_self, rerank)
    return search_partition


def neighbours_frame(loaded: searcher.LoadedIndex, frame: pd.DataFrame, k: int, exclude_self: bool,
                     rerank: Rerank = Rerank()) -> pd.DataFrame:
    """Rows of the neighbours table (contracts.NEIGHBOURS) for a block of queries (id, embedding[, status,
    error]): k rows per `ok` query (fewer only when the index holds fewer), ranks from 1, status ok; one
    row with null rank, neighbor_id and score for a query that is not ok (its status and error are kept)
    or that finds no neighbour (status no_neighbours). With `rerank`, the first max(k, rerank.top) results are
    re-ordered (udfs.reranking) and the scores are the re-ranking's."""
    good = (frame["status"] == "ok").to_numpy() if "status" in frame else np.ones(len(frame), bool)
    found: dict[int, list] = {}
    if good.any():
        scores, names = reranked_search(loaded, vectors_of(frame[good]), k + 1 if exclude_self else k, rerank)
        for row, query, row_scores, row_names in zip(np.flatnonzero(good), frame["id"].to_numpy()[good],
                                                     scores, names):
            found[row] = [(n, float(s)) for n, s in zip(row_names, row_scores) if n is not None and
                          not (exclude_self and n == query)][:k]
    rows = []
    for row, query in enumerate(frame["id"].tolist()):
        kept = found.get(row, [])
        rows.extend((query, rank, name, score, "ok", None) for rank, (name, score) in enumerate(kept, 1))
        if not kept:
            rows.append((query, None, None, None, *_without_neighbours(frame, row, good[row], exclude_self)))
    out = pd.DataFrame(rows, columns=["query_id", "rank", "neighbor_id", "score", "status", "error"])
    return out.astype({"rank": "Int32", "score": "float32"})


def reranked_search(loaded: searcher.LoadedIndex, queries: np.ndarray, k: int,
                    rerank: Rerank) -> tuple[np.ndarray, np.ndarray]:
    """(scores [n, k], string ids [n, k]; None = none) of the queries: the index's top k, or its top
    max(k, rerank.top) re-ordered by `rerank` (candidate vectors from the index) and cut to k."""
    if rerank.method == "none":
        return searcher.search(loaded, queries, k)
    scores, ids = searcher.search_ids(loaded, queries, max(k, rerank.top))
    scores, ids = reranking.rerank(rerank, queries, ids, searcher.vectors_by_id(loaded, ids), scores)
    return scores[:, :k], searcher.names_of(loaded, ids[:, :k])


def _without_neighbours(frame: pd.DataFrame, row: int, searched: bool, exclude_self: bool) -> tuple:
    """(status, error) of a query that has no neighbour rows: not searched (its own), or nothing found."""
    if searched:
        return NO_NEIGHBOURS, "the index returned no neighbour" + (" other than the query itself" if exclude_self else "")
    return frame["status"].iat[row], frame["error"].iat[row] if "error" in frame else None


def spread(df, partitions: int = 0):
    """`df` dealt round-robin over `partitions`, or (0) at least one partition per core: files are
    read as skewed partitions (one row group can hold every query), which would leave cores idle."""
    cores = df.sparkSession.sparkContext.defaultParallelism
    return df.repartition(partitions or max(cores, df.rdd.getNumPartitions()))

