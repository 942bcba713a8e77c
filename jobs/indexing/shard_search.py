"""Search of a sharded index in Spark: the queries written once by block (query_blocks), one task per
(query block, shard group) that reads its block and searches the group's shards in turn, the group's
partial top-k merged in the task, the groups' merged per query by a Spark aggregation and named by a join
with ids.parquet."""
from __future__ import annotations

import logging
import math
import sys
from dataclasses import dataclass
from typing import Callable, Iterable

import numpy as np
import pandas as pd

from index import manifest, searcher, shards, store
from jobs.indexing import partitions, query_blocks
from jobs.indexing.partitions import NO_NEIGHBOURS, Frames

PARTIAL_SCHEMA = "id string, self_id long, block int, shard_group int, scores array<float>, ids array<long>"
TASK_SCHEMA = "block int, shard_group int, queries long"
GROUP_ROWS = 32768   # auto query_blocks: about this many queries per task (thousands per faiss call)
COARSE_CELLS = 1 << 24  # query x probed-list entries kept per task for the next shard (~200 MiB at most)
TASKS_PER_CORE = 3   # shard groups are chosen for about this many tasks per core of the session
Task = tuple[int, int]  # (query block, shard group)
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ShardPlan:
    """What every (block, shard group) task needs: the index, its shard files, the blocks, the groups and
    the search."""

    folder: str
    shards: tuple[tuple[str, str], ...]  # (file name, sha256) per shard, in the manifest's order
    blocks: int                          # query blocks: a query's block is pmod(xxhash64(id), blocks)
    groups: tuple[tuple[int, ...], ...]  # shard numbers per shard group (shard_groups)
    k: int                               # neighbours per query in the result
    exclude_self: bool                   # each shard is asked for k + 1, the query's own id dropped
    params: tuple[int, int]              # (nprobe, ef_search); 0 = the manifest's
    batch_size: int                      # queries per faiss search call
    version: str                         # partitions.index_version: a rebuilt index is reloaded
    metric: str                          # the index's: ip or l2

    @property
    def tasks(self) -> list[Task]:
        """Every (block, shard group), group-major: consecutive tasks share their shards."""
        return [(b, g) for g in range(len(self.groups)) for b in range(self.blocks)]


def is_sharded(meta: manifest.Manifest) -> bool:
    """An index published as several shard files (merge: none): searched shard by shard."""
    return meta.merge == "none" and len(meta.shards) > 1


def shard_groups(shards: int, blocks: int, cores: int) -> tuple[tuple[int, ...], ...]:
    """Consecutive shards in G groups, G = min(shards, ceil(TASKS_PER_CORE x cores / blocks)): about 3
    tasks per core (blocks x G), no fewer than the blocks, and each shard in as few tasks as that allows
    (a task opens its group's shards one after another; every query block meets every shard once)."""
    wanted = min(shards, max(1, math.ceil(TASKS_PER_CORE * cores / blocks)))
    size = math.ceil(shards / wanted)
    return tuple(tuple(range(start, min(start + size, shards))) for start in range(0, shards, size))


def plan(folder: str, meta: manifest.Manifest, queries: int, query_blocks: int, search: tuple,
         cores: int) -> ShardPlan:
    """The plan for `queries` query rows: `query_blocks` blocks, or (0) one per GROUP_ROWS queries; shard
    groups for `cores` (the session's defaultParallelism). `search` = (k, exclude_self, (nprobe,
    ef_search), batch_size)."""
    k, exclude_self, params, batch_size = search
    blocks = query_blocks or max(1, math.ceil(queries / GROUP_ROWS))
    params = (params[0] or meta.nprobe, params[1] or meta.ef_search)
    return ShardPlan(folder, tuple((s["name"], s["sha256"]) for s in meta.shards), blocks,
                     shard_groups(len(meta.shards), blocks, cores), k, exclude_self, params, batch_size,
                     partitions.index_version(folder), meta.metric)


def task_table(spark, tasks: list[Task]):
    """DataFrame(block, shard_group): one row per task, each in its own partition (no shuffle)."""
    rdd = spark.sparkContext.parallelize(tasks, max(1, len(tasks)))
    return spark.createDataFrame(rdd, "block int, shard_group int")


def searched(rows, shard_plan: ShardPlan, location: str):
    """The PARTIAL_SCHEMA rows of every query of `rows` (id, embedding), one per (query, shard group):
    the queries written once to `location` (query_blocks.write, eager), then lazily one task per (block,
    group). `location` must stay until the rows are used."""
    query_blocks.write(rows, shard_plan.blocks, location)
    fn = shard_searcher(shard_plan, location)
    return task_table(rows.sparkSession, shard_plan.tasks).mapInPandas(fn, PARTIAL_SCHEMA)


def search_group(vectors: np.ndarray, indexes: Iterable["object"], k: int, batch_size: int, metric: str
                 ) -> tuple[np.ndarray, np.ndarray]:
    """The top k of `vectors` (float32 [q, dim]) over several shards, taken one at a time from `indexes`
    and merged as they come (shards.merge_topk): (scores [q, k] float32, faiss ids [q, k] int64; -1 =
    none).

    IVF shards of one index share its trained coarse quantizer, so the lists each query probes are the
    same in every shard: they are found once per batch (quantizer.search) and each shard scans only its
    own part of them (faiss `IndexIVF.search_preassigned`): the same results as `index.search`, without
    repeating the quantizer (q x nlist x dim) in every shard. Other shards are searched whole."""
    best, coarse = None, Coarse(len(vectors))
    for index in indexes:
        found = [coarse.search(index, np.ascontiguousarray(vectors[i:i + batch_size]), k, i)
                 for i in range(0, len(vectors), batch_size)]
        part = tuple(np.vstack([f[j] for f in found]) for j in (0, 1))
        best = part if best is None else shards.merge_topk([best, part], k, metric)
    return best


class Coarse:
    """The probed lists of each query batch of one task of `rows` queries, kept for the next shard of the
    group when rows x nprobe is at most COARSE_CELLS (else each shard runs its own quantizer)."""

    def __init__(self, rows: int):
        self.rows = rows
        self._kept: dict[tuple[int, int, int], tuple[np.ndarray, np.ndarray]] = {}

    def search(self, index: "object", x: np.ndarray, k: int, batch: int) -> tuple[np.ndarray, np.ndarray]:
        import faiss

        if not isinstance(index, faiss.IndexIVF) or self.rows * index.nprobe > COARSE_CELLS:
            return index.search(x, k)
        key = (batch, index.nlist, index.nprobe)
        if key not in self._kept:
            self._kept[key] = index.quantizer.search(x, index.nprobe)
        distances, lists = self._kept[key]
        return index.search_preassigned(x, k, lists, distances)


def worker_log() -> logging.Logger:
    """This module's logger on a worker: INFO to stderr (the executor's stderr log), the root untouched."""
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False
    return log


def shard_searcher(shard_plan: ShardPlan, location: str, write: Callable[[Task, pd.DataFrame], None] | None = None
                   ) -> Callable[[Frames], Frames]:
    """A mapInPandas function over task rows (block, shard_group): each task reads its block from
    `location` (query_blocks.read) and searches it in each shard of its group in turn, opening one shard
    at a time (searcher.load_shard: that file's sha256 checked) and keeping the last until another is needed. Yields the
    PARTIAL_SCHEMA rows (the group's top k, k + 1 with exclude_self), or with `write` hands them to it and
    yields one TASK_SCHEMA row per task. Logs "opened shard <name>" and "searched block <b> shard <name>
    (<n> queries)" at INFO."""
    def search_tasks(frames: Frames) -> Frames:
        from udfs import cache

        cache.set_faiss_threads()
        out = worker_log()
        for frame in frames:
            for block, group in zip(frame["block"].tolist(), frame["shard_group"].tolist()):
                queries, vectors = query_blocks.read(location, block)
                found = _partial(queries, block, group)
                if len(queries):
                    opened = _opened(shard_plan, group, block, len(queries), out)
                    scores, ids = search_group(vectors, opened, shard_plan.k + shard_plan.exclude_self,
                                               shard_plan.batch_size, shard_plan.metric)
                    found = found.assign(scores=list(scores.astype(np.float32)), ids=list(ids))
                if write is None:
                    yield found
                else:
                    write((block, group), found)
                    yield pd.DataFrame({"block": [block], "shard_group": [group], "queries": [len(queries)]})
    return search_tasks


def _partial(queries: pd.DataFrame, block: int, group: int) -> pd.DataFrame:
    return pd.DataFrame({"id": queries["id"], "self_id": queries["self_id"], "block": np.int32(block),
                         "shard_group": np.int32(group), "scores": None, "ids": None})


def _opened(shard_plan: ShardPlan, group: int, block: int, queries: int, out: logging.Logger):
    """Each shard of `group`, loaded (or kept from the worker's last task) one at a time."""
    from udfs import cache

    for shard in shard_plan.groups[group]:
        name, digest = shard_plan.shards[shard]

        def load(name=name, digest=digest):
            out.info("opened shard %s", name)
            return searcher.load_shard(shard_plan.folder, name, digest, *shard_plan.params)
        yield cache.get_latest(("shard", shard_plan.folder, shard_plan.params), f"{shard_plan.version}/{name}", load)
        out.info("searched block %d shard %s (%d queries)", block, name, queries)


def merger(k: int, metric: str) -> Callable[[Frames], Frames]:
    """A mapInPandas function: (id, self_id, scores, ids: every shard group's partial results of a query)
    → (query_id, rank, faiss_id, score) rows, the best k (shards.merge_partial; self dropped where
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


def neighbours(partials, rows, shard_plan: ShardPlan):
    """The neighbours table (contracts.NEIGHBOURS) from the PARTIAL_SCHEMA rows of every (block, shard
    group) and `rows` (id, embedding[, status, error]: the queries; those not ok get their own status row).
    With one shard group a query has one partial row: no aggregation."""
    from pyspark.sql import functions as F

    self_id = F.col("self_id") if shard_plan.exclude_self else F.lit(None).cast("long").alias("self_id")
    if len(shard_plan.groups) > 1:
        partials = (partials.groupBy("id", "self_id")
                    .agg(F.flatten(F.collect_list("scores")).alias("scores"), F.flatten(F.collect_list("ids")).alias("ids")))
    merged = (partials.select("id", self_id, "scores", "ids")
              .mapInPandas(merger(shard_plan.k, shard_plan.metric), "query_id string, rank int, faiss_id long, score float"))
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
