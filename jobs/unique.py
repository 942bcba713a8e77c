"""Rank items by how unusual they are: each item's nearest other item and similarity, least similar first."""
from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass
from typing import ClassVar

if __package__ in (None, ""):  # `spark-submit jobs/unique.py` without the zip on the path
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from jobs.indexing import partitions as indexing  # noqa: E402
from jobs.indexing import neighbours  # noqa: E402
from jobs.tables import publish as tables  # noqa: E402
from jobs.tables import vectors  # noqa: E402
from jobs.core.config import ConfigError, JobConfig, key, require_non_negative, require_positive  # noqa: E402
from jobs.core.paths import check_input_exists, check_output_not_input  # noqa: E402
from jobs.core.summary import JobFailed, RunSummary  # noqa: E402

NAME = "unique"
PLAN = ("k-NN of every item (self excluded, exact duplicates skipped; items with only copies searched "
        "again with twice the k) → nearest other → rank ascending")
COLUMNS = ("id", "nearest_id", "nearest_score", "rank", "status", "error")
ONLY_COPIES = "only_copies"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Config(JobConfig):
    default_output: ClassVar[str] = "uniqueness"
    embeddings: str = key("", "the embeddings table (Parquet path or `table:db.name`)", flag="--embeddings")
    index: str = key("", "an index of the same embeddings; empty = build one for this run", flag="--index")
    k: int = key(10, "neighbours looked at per item first; an item whose k are all its exact copies is "
                 "searched again with twice the k")
    count_duplicates: bool = key(False, "let exact duplicates (same content_hash) count as nearest")
    nprobe: int = key(0, "IVF lists searched; 0 = the index's tuned value")
    batch_size: int = key(4096, "queries per index search call")

    def validate(self) -> None:
        super().validate()
        check_input_exists("embeddings", self.embeddings)
        check_output_not_input(self.embeddings, self.output)
        if self.index:
            check_input_exists("index", self.index, globs=False)
        require_positive(self, "k", "batch_size")
        require_non_negative(self, "nprobe")



def nearest_other(near, hashes, count_duplicates: bool):
    """(id, nearest_id, nearest_score, status, seen) per query of `near` (NEIGHBOURS_SCHEMA): its
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
              .otherwise(indexing.NO_NEIGHBOURS))
    return found.select(F.col("query_id").alias("id"), F.col("best.neighbor_id").alias("nearest_id"),
                        F.col("best.score").alias("nearest_score"), status.alias("status"), "seen")


def search_past_copies(ok, folder: str, cfg: Config, n: int) -> tuple[list, list]:
    """nearest_other of every row of `ok` (n rows), searching again with twice the k (up to every
    other item) the rows whose k neighbours were all exact copies of them.
    Returns (frames whose union has one row per item, the cached frames to unpersist)."""
    from pyspark.sql import functions as F

    hashes, pending, k, parts, cached = ok.select("id", "content_hash"), ok, cfg.k, [], []
    while True:
        near = neighbours.all_neighbours(pending, folder, k, cfg.nprobe, cfg.batch_size)
        cached.append(nearest_other(near, hashes, cfg.count_duplicates).cache())
        waiting = cached[-1].filter(F.col("status") == ONLY_COPIES).select("id")
        if cfg.count_duplicates or k >= n - 1 or not (count := waiting.count()):
            return parts + [cached[-1]], cached
        parts.append(cached[-1].filter(F.col("status") != ONLY_COPIES))
        k = min(2 * k, n - 1)
        log.info("unique: %d items have only exact copies among their nearest; searching them again "
                 "with k=%d", count, k)
        pending = ok.join(waiting, "id", "left_semi")


def uniqueness(found: list, bad=None):
    """(id, nearest_id, nearest_score, rank, status, error): rank 1 = the least similar to anything
    else; items without a nearest other item (status only_copies, no_neighbours, or a vector that
    cannot be searched, in `bad`: DataFrame(id, status, error)) rank last, by id."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    every = found[0]
    for more in found[1:]:
        every = every.unionByName(more)
    copies = F.format_string("its %d nearest items are all exact copies of it (same content_hash): no other "
                             "item to compare with", F.col("seen"))
    reason = (F.when(F.col("status") == ONLY_COPIES, copies)
              .when(F.col("status") == indexing.NO_NEIGHBOURS, F.lit("the index returned no other item")))
    every = every.select("id", "nearest_id", "nearest_score", "status", reason.alias("error"))
    if bad is not None:
        nothing = F.lit(None).cast("string").alias("nearest_id"), F.lit(None).cast("float").alias("nearest_score")
        every = every.unionByName(bad.select("id", *nothing, "status", "error"))
    order = Window.orderBy(F.col("status") != "ok", F.col("nearest_score").asc_nulls_last(), "id")
    return every.withColumn("rank", F.row_number().over(order)).select(*COLUMNS)


def run(spark, cfg: Config, summary: RunSummary) -> None:
    tables.prepare_output(spark, cfg.output, cfg.mode)
    with summary.timed("read embeddings"):
        ok, n_ok, summary.rows_in = neighbours.read_ok(spark, cfg.embeddings, "embeddings")
    if n_ok == 0:
        raise ConfigError(f"key 'embeddings': no rows with status ok in {cfg.embeddings!r}")
    with neighbours.index_for(spark, cfg, summary) as folder:
        meta = neighbours.checked_manifest(folder)
        neighbours.read_ok(spark, cfg.embeddings, "embeddings", model=meta.model)
        good, left_out = vectors.usable_rows(ok, n_ok, meta.dim, meta.metric, f"the {NAME} job")
        bad = vectors.failed_rows(ok, meta.dim, meta.metric) if left_out else None
        with summary.timed("search"):
            found, cached = search_past_copies(good, folder, cfg, n_ok - sum(left_out.values()))

        def verify(staged) -> None:
            counts = {r["status"]: int(r["count"]) for r in staged.groupBy("status").count().collect()}
            if sum(counts.values()) != n_ok:
                raise JobFailed(f"{n_ok} items but {sum(counts.values())} uniqueness rows")
            skipped = summary.rows_in - n_ok  # not ok in the table: not ranked
            summary.statuses = {**counts, **({"skipped": skipped} if skipped else {})}
        with summary.timed("rank + write"):
            tables.publish(spark, uniqueness(found, bad), cfg.output, cfg.mode, summary.run_id, verify)
    for frame in cached:
        frame.unpersist()
    summary.outputs.append(cfg.output)


if __name__ == "__main__":
    from jobs import cli, unique

    sys.exit(cli.run_job(unique, sys.argv[1:]))
