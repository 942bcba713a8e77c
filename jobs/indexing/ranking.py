"""Uniqueness: each item's nearest other item (exact copies skipped) and its similarity, ranked least similar
first — the unique step."""
from __future__ import annotations

import logging
from dataclasses import dataclass

from jobs.core.config import require_non_negative, require_positive
from jobs.indexing import neighbours
from jobs.indexing.blocks import Checkpoints
from jobs.indexing.partitions import NO_NEIGHBOURS
from jobs.tables.contracts import UNIQUENESS, Embeddings
from jobs.tables.positions import rank_by
from jobs.tables.vectors import failed_rows

ONLY_COPIES = "only_copies"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class UniqueOptions:
    """How the nearest other item is found; the names are the unique job's config keys."""

    k: int = 10                     # neighbours looked at per item first (doubled for items with only copies)
    count_duplicates: bool = False  # let exact duplicates (same content_hash) count as nearest
    nprobe: int = 0                 # IVF lists searched; 0 = the index's tuned value
    batch_size: int = 4096          # queries per index search call
    query_blocks: int = 0           # sharded index: query blocks (tasks = blocks x shard groups); 0 = from the row count

    def check(self) -> None:
        require_positive(self, "k", "batch_size")
        require_non_negative(self, "nprobe", "query_blocks")


def rank_uniqueness(table: Embeddings, index: str, work: str, opts: UniqueOptions = UniqueOptions(),
                    checkpoints: Checkpoints | None = None) -> tuple["object", list]:
    """(the uniqueness table (contracts.UNIQUENESS) of `table`'s ok rows searched through the index at
    `index`: rank 1 = the least similar to anything else; items without a nearest other item (only
    copies, no neighbours, a vector that cannot be searched) rank last, by id; the cached frames to
    unpersist once it is written). The ranks are computed through `work` (a scratch folder, see
    positions.rank_by) and the result reads it: write it before the folder is removed. Through a
    sharded index with `checkpoints`, the first search's finished (block, shard group) tasks are kept and
    reused by a re-run (the re-searches of items with only copies are not). Raises ConfigError for bad
    options."""
    opts.check()
    meta = neighbours.manifest_for(table, index)
    good, left_out = table.usable(meta.metric, "the unique job")
    bad = failed_rows(table.ok, meta.dim, meta.metric) if left_out else None
    found, cached = search_past_copies(good, index, opts, table.n_ok - sum(left_out.values()), work, checkpoints)
    return uniqueness(found, work, bad), cached


def nearest_other(near, hashes, count_duplicates: bool):
    """(id, nearest_id, nearest_score, status, seen) per query of `near` (a neighbours table): its
    best-ranked neighbour that is not an exact copy (same content_hash; any, with `count_duplicates`).
    status: ok, only_copies (its `seen` neighbours are all copies) or no_neighbours."""
    from pyspark.sql import functions as F

    rows = (near.join(hashes.select(F.col("id").alias("query_id"), F.col("content_hash").alias("qh")),
                      "query_id", "left")
            .join(hashes.select(F.col("id").alias("neighbor_id"), F.col("content_hash").alias("nh")),
                  "neighbor_id", "left"))
    copy = F.lit(False) if count_duplicates else F.coalesce(F.col("qh") == F.col("nh"), F.lit(False))
    other = F.when(F.col("neighbor_id").isNotNull() & ~copy, F.struct("rank", "neighbor_id", "score"))
    found = rows.groupBy("query_id").agg(F.min(other).alias("best"), F.count("neighbor_id").alias("seen"))
    status = (F.when(F.col("best").isNotNull(), "ok").when(F.col("seen") > 0, ONLY_COPIES)
              .otherwise(NO_NEIGHBOURS))
    return found.select(F.col("query_id").alias("id"), F.col("best.neighbor_id").alias("nearest_id"),
                        F.col("best.score").alias("nearest_score"), status.alias("status"), "seen")


def search_past_copies(ok, folder: str, opts: UniqueOptions, n: int, work: str,
                       checkpoints: Checkpoints | None = None) -> tuple[list, list]:
    """nearest_other of every row of `ok` (n rows), searching again with twice the k (up to every
    other item) the rows whose k neighbours were all exact copies of them; the first search through
    `checkpoints`, the queries of a sharded index written under `work` (see neighbours.all_neighbours).
    Returns (frames whose union has one row per item, the cached frames to unpersist)."""
    from pyspark.sql import functions as F

    hashes, pending, k, parts, cached, size = ok.select("id", "content_hash"), ok, opts.k, [], [], n
    while True:
        search = neighbours.SearchOptions(k, True, opts.nprobe, batch_size=opts.batch_size, query_blocks=opts.query_blocks)
        near = neighbours.all_neighbours(pending, folder, search, size, work, checkpoints if pending is ok else None)
        cached.append(nearest_other(near, hashes, opts.count_duplicates).cache())
        waiting = cached[-1].filter(F.col("status") == ONLY_COPIES).select("id")
        if opts.count_duplicates or k >= n - 1 or not (count := waiting.count()):
            return parts + [cached[-1]], cached
        parts.append(cached[-1].filter(F.col("status") != ONLY_COPIES))
        k = min(2 * k, n - 1)
        log.info("unique: %d items have only exact copies among their nearest; searching them again "
                 "with k=%d", count, k)
        pending, size = ok.join(waiting, "id", "left_semi"), count


def uniqueness(found: list, work: str, bad=None):
    """(id, nearest_id, nearest_score, rank, status, error): rank 1 = the least similar to anything
    else, ties by id; items without a nearest other item (status only_copies, no_neighbours, or a
    vector that cannot be searched, in `bad`: DataFrame(id, status, error)) rank last, by id. Ranked
    by positions.rank_by through `work` (no window over one partition)."""
    from pyspark.sql import functions as F

    every = found[0]
    for more in found[1:]:
        every = every.unionByName(more)
    copies = F.format_string("its %d nearest items are all exact copies of it (same content_hash): no other "
                             "item to compare with", F.col("seen"))
    reason = (F.when(F.col("status") == ONLY_COPIES, copies)
              .when(F.col("status") == NO_NEIGHBOURS, F.lit("the index returned no other item")))
    every = every.select("id", "nearest_id", "nearest_score", "status", reason.alias("error"))
    if bad is not None:
        nothing = F.lit(None).cast("string").alias("nearest_id"), F.lit(None).cast("float").alias("nearest_score")
        every = every.unionByName(bad.select("id", *nothing, "status", "error"))
    return rank_by(every, rank_order(), work).select(*UNIQUENESS.columns)


def rank_order() -> list:
    """The uniqueness order, rank 1 first: ok rows by nearest_score (least similar first), then the
    rest; ties by id."""
    from pyspark.sql import functions as F

    return [F.col("status") != "ok", F.col("nearest_score").asc_nulls_last(), F.col("id")]
