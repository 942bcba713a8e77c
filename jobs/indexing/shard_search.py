"""Search of a sharded index in Spark: (query block x shard) tasks, each searching one shard with one block
of queries; the partial top-k merged per query by a Spark aggregation and named by a join with ids.parquet."""
from __future__ import annotations

import logging
import math
import sys
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
import pandas as pd

from index import manifest, searcher, shards, store
from jobs.indexing import partitions
from jobs.indexing.partitions import NO_NEIGHBOURS, Frames

PARTIAL_SCHEMA = "id string, self_id long, block int, shard int, scores array<float>, ids array<long>"
TASK_SCHEMA = "block int, shard int, queries long"
GROUP_ROWS = 32768  # auto query_blocks: about this many queries per task (thousands per faiss call)
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ShardPlan:
    """What every (block, shard) task needs: the index, its shard files, the block count and the search."""

    folder: str
    shards: tuple[tuple[str, str], ...]  # (file name, sha256) per shard, in the manifest's order
    blocks: int                          # query blocks: a query's block is pmod(xxhash64(id), blocks)
    k: int                               # neighbours per query in the result
    exclude_self: bool                   # each shard is asked for k + 1, the query's own id dropped
    params: tuple[int, int]              # (nprobe, ef_search); 0 = the manifest's
    batch_size: int                      # queries per faiss search call
    version: str                         # partitions.index_version: a rebuilt index is reloaded

    @property
    def tasks(self) -> int:
        return self.blocks * len(self.shards)


def is_sharded(meta: manifest.Manifest) -> bool:
    """An index published as several shard files (merge: none): searched shard by shard."""
    return meta.merge == "none" and len(meta.shards) > 1


def plan(folder: str, meta: manifest.Manifest, queries: int, query_blocks: int, search: tuple) -> ShardPlan:
    """The plan for `queries` query rows: `query_blocks` blocks, or (0) one per GROUP_ROWS queries.
    `search` = (k, exclude_self, (nprobe, ef_search), batch_size)."""
    k, exclude_self, params, batch_size = search
    blocks = query_blocks or max(1, math.ceil(queries / GROUP_ROWS))
    params = (params[0] or meta.nprobe, params[1] or meta.ef_search)
    return ShardPlan(folder, tuple((s["name"], s["sha256"]) for s in meta.shards), blocks, k, exclude_self,
                     params, batch_size, partitions.index_version(folder))


def tasks(rows, shard_plan: ShardPlan, pending: list[tuple[int, int]] | None = None):
    """(id, self_id, block, shard, embedding): each query of `rows` (id, embedding) once per shard, or per
    (block, shard) of `pending`; range-partitioned by (shard, block) and sorted, so a task meets each
    (block, shard) group in one run and the groups of one shard one after another."""
    from pyspark.sql import functions as F

    spark = rows.sparkSession
    pairs = pending if pending is not None else [(b, s) for s in range(len(shard_plan.shards))
                                                 for b in range(shard_plan.blocks)]
    wanted = spark.createDataFrame(pairs, "block int, shard int")
    block = F.pmod(F.xxhash64("id"), F.lit(shard_plan.blocks)).cast("int").alias("block")
    queries = rows.select("id", partitions.faiss_id_column().alias("self_id"), block, "embedding")
    return (queries.join(F.broadcast(wanted), "block")
            .repartitionByRange(max(1, len(pairs)), "shard", "block").sortWithinPartitions("shard", "block"))


def groups(frames: Frames) -> Iterator[tuple[tuple[int, int], pd.DataFrame]]:
    """((block, shard), rows) for each run of equal (block, shard) in frames sorted by it, runs that span
    frames joined."""
    held: list[pd.DataFrame] = []
    for frame in frames:
        keys = frame["block"].to_numpy(np.int64) * (1 << 32) + frame["shard"].to_numpy(np.int64)
        starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
        for start, end in zip(starts, [*starts[1:], len(frame)]):
            run = frame.iloc[start:end]
            if held and (held[0]["block"].iat[0], held[0]["shard"].iat[0]) != (run["block"].iat[0], run["shard"].iat[0]):
                yield _key(held[0]), pd.concat(held, ignore_index=True)
                held = []
            held.append(run)
    if held:
        yield _key(held[0]), pd.concat(held, ignore_index=True)


def _key(frame: pd.DataFrame) -> tuple[int, int]:
    return int(frame["block"].iat[0]), int(frame["shard"].iat[0])


def search_group(index: "object", frame: pd.DataFrame, shard_plan: ShardPlan) -> pd.DataFrame:
    """PARTIAL_SCHEMA rows: each query's top k (k + 1 with exclude_self) in one shard, as arrays."""
    k = shard_plan.k + shard_plan.exclude_self
    vectors = partitions.vectors_of(frame)
    found = [index.search(np.ascontiguousarray(vectors[i:i + shard_plan.batch_size]), k)
             for i in range(0, len(vectors), shard_plan.batch_size)]
    scores, ids = (np.vstack([f[j] for f in found]) for j in (0, 1))
    return pd.DataFrame({"id": frame["id"], "self_id": frame["self_id"], "block": frame["block"],
                         "shard": frame["shard"], "scores": list(scores.astype(np.float32)), "ids": list(ids)})


def worker_log() -> logging.Logger:
    """This module's logger on a worker: INFO to stderr (the executor's stderr log), the root untouched."""
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False
    return log


def shard_searcher(shard_plan: ShardPlan, write: Callable[[tuple[int, int], pd.DataFrame], None] | None = None
                   ) -> Callable[[Frames], Frames]:
    """A mapInPandas function over `tasks` rows: each (block, shard) group searched in its shard, which the
    worker opens (sha256 of that file checked) and keeps until another shard is needed. Yields the
    PARTIAL_SCHEMA rows, or with `write` hands them to it and yields one TASK_SCHEMA row per group.
    Logs "opened shard <name>" and "searched block <b> shard <name> (<n> queries)" at INFO."""
    def search_tasks(frames: Frames) -> Frames:
        from udfs import cache

        cache.set_faiss_threads()
        out = worker_log()
        for (block, shard), frame in groups(frames):
            name, digest = shard_plan.shards[shard]

            def load(name=name, digest=digest):
                out.info("opened shard %s", name)
                return searcher.load_shard(shard_plan.folder, name, digest, *shard_plan.params)
            index = cache.get_latest(("shard", shard_plan.folder, shard_plan.params), f"{shard_plan.version}/{name}", load)
            found = search_group(index, frame, shard_plan)
            out.info("searched block %d shard %s (%d queries)", block, name, len(frame))
            if write is None:
                yield found
            else:
                write((block, shard), found)
                yield pd.DataFrame({"block": [block], "shard": [shard], "queries": [len(frame)]})
    return search_tasks


def merger(k: int, metric: str) -> Callable[[Frames], Frames]:
    """A mapInPandas function: (id, self_id, scores, ids: every shard's partial results of a query) →
    (query_id, rank, faiss_id, score) rows, the best k (shards.merge_partial; self dropped where
    self_id is set), one row with null rank for a query with none."""
    def merge(frames: Frames) -> Frames:
        for frame in frames:
            width = max(len(a) for a in frame["ids"])
            scores = np.full((len(frame), width), np.nan, np.float32)
            ids = np.full((len(frame), width), -1, np.int64)
            for row, (s, i) in enumerate(zip(frame["scores"], frame["ids"])):
                scores[row, :len(s)], ids[row, :len(i)] = s, i
            own = frame["self_id"].to_numpy(np.int64) if frame["self_id"].notna().all() else None
            best_scores, best_ids = shards.merge_partial(scores, ids, k, metric, own)
            rows, ranks = np.nonzero(best_ids >= 0)
            empty = np.flatnonzero((best_ids < 0).all(axis=1))  # one row each: rank, faiss_id, score null
            query, blank = frame["id"].to_numpy(), np.r_[np.zeros(len(rows), bool), np.ones(len(empty), bool)]
            rank = pd.array(np.r_[ranks + 1, np.zeros(len(empty), np.int64)], "Int32")
            faiss_id = pd.array(np.r_[best_ids[rows, ranks], np.zeros(len(empty), np.int64)], "Int64")
            rank[blank], faiss_id[blank] = pd.NA, pd.NA
            yield pd.DataFrame({"query_id": np.r_[query[rows], query[empty]], "rank": rank, "faiss_id": faiss_id,
                                "score": np.r_[best_scores[rows, ranks], np.full(len(empty), np.nan, np.float32)]})
    return merge


def neighbours(partials, rows, shard_plan: ShardPlan, metric: str):
    """The neighbours table (contracts.NEIGHBOURS) from the PARTIAL_SCHEMA rows of every (block, shard) and
    `rows` (id, embedding[, status, error]: the queries; those not ok get their own status row)."""
    from pyspark.sql import functions as F

    merged = (partials.groupBy("id", "self_id")
              .agg(F.flatten(F.collect_list("scores")).alias("scores"), F.flatten(F.collect_list("ids")).alias("ids"))
              .select("id", F.col("self_id") if shard_plan.exclude_self else F.lit(None).cast("long").alias("self_id"),
                      "scores", "ids")
              .mapInPandas(merger(shard_plan.k, metric), "query_id string, rank int, faiss_id long, score float"))
    names = (rows.sparkSession.read.parquet(store.join(shard_plan.folder, manifest.IDS))
             .select("faiss_id", F.col("id").alias("neighbor_id")))
    nothing = "the index returned no neighbour" + (" other than the query itself" if shard_plan.exclude_self else "")
    found = merged.join(names, "faiss_id", "left").select(
        "query_id", "rank", "neighbor_id", "score",
        F.when(F.col("rank").isNull(), NO_NEIGHBOURS).otherwise("ok").alias("status"),
        F.when(F.col("rank").isNull(), nothing).alias("error"))
    if "status" not in rows.columns:
        return found
    nulls = [F.lit(None).cast(t).alias(c) for c, t in (("rank", "int"), ("neighbor_id", "string"), ("score", "float"))]
    skipped = rows.filter(F.col("status") != "ok").select(F.col("id").alias("query_id"), *nulls, "status", "error")
    return found.unionByName(skipped)
