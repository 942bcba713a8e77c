"""Rank items by how unusual they are: each item's nearest other item and similarity, least similar first."""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import ClassVar

if __package__ in (None, ""):  # `spark-submit jobs/unique.py` without the zip on the path
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from jobs import neighbours, tables  # noqa: E402
from jobs.config import ConfigError, JobConfig, key, require_non_negative, require_positive  # noqa: E402
from jobs.paths import check_input_exists, check_output_not_input  # noqa: E402
from jobs.summary import JobFailed, RunSummary  # noqa: E402

NAME = "unique"
PLAN = "k-NN of every item (self excluded, exact duplicates skipped) → nearest other → rank ascending"


@dataclass(frozen=True)
class Config(JobConfig):
    default_output: ClassVar[str] = "uniqueness"
    embeddings: str = key("", "the embeddings table (Parquet path or `table:db.name`)", flag="--embeddings")
    index: str = key("", "an index of the same embeddings; empty = build one for this run", flag="--index")
    k: int = key(10, "neighbours looked at per item (room to skip exact duplicates)")
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



def uniqueness(ok, near, count_duplicates: bool):
    """(id, nearest_id, nearest_score, rank): rank 1 = the least similar to anything else.

    Items whose k neighbours are all exact duplicates get null nearest_* and rank last: raise k.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    hashes = ok.select("id", "content_hash")
    candidates = (near.join(hashes.withColumnRenamed("id", "query_id"), "query_id")
                  .join(hashes.select(F.col("id").alias("neighbor_id"), F.col("content_hash").alias("nh")),
                        "neighbor_id"))
    if not count_duplicates:
        candidates = candidates.filter(F.col("content_hash").isNull() | (F.col("content_hash") != F.col("nh")))
    first = Window.partitionBy("query_id").orderBy("rank")
    nearest = (candidates.withColumn("n", F.row_number().over(first)).filter("n = 1")
               .select(F.col("query_id").alias("id"), F.col("neighbor_id").alias("nearest_id"),
                       F.col("score").alias("nearest_score")))
    every = ok.select("id").join(nearest, "id", "left")
    order = Window.orderBy(F.col("nearest_score").asc_nulls_last(), "id")
    return every.withColumn("rank", F.row_number().over(order))


def run(spark, cfg: Config, summary: RunSummary) -> None:
    tables.prepare_output(spark, cfg.output, cfg.mode)
    with summary.timed("read embeddings"):
        ok, n_ok, summary.rows_in = neighbours.read_ok(spark, cfg.embeddings, "embeddings")
    if n_ok < 2:
        raise ConfigError(f"key 'embeddings': {n_ok} rows with status ok; uniqueness needs at least 2")
    with neighbours.index_for(spark, cfg, summary) as folder:
        meta = neighbours.checked_manifest(folder)
        neighbours.read_ok(spark, cfg.embeddings, "embeddings", model=meta.model)
        near = neighbours.all_neighbours(ok, folder, cfg.k, cfg.nprobe, cfg.batch_size)

        def verify(staged) -> None:
            if staged.count() != n_ok:
                raise JobFailed(f"{n_ok} items but {staged.count()} uniqueness rows")
        with summary.timed("rank + write"):
            tables.publish(spark, uniqueness(ok, near, cfg.count_duplicates), cfg.output, cfg.mode,
                           summary.run_id, verify)
    summary.count_ok(n_ok)
    summary.outputs.append(cfg.output)


if __name__ == "__main__":
    from jobs import cli, unique

    sys.exit(cli.run_job(unique, sys.argv[1:]))
