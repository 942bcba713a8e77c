"""Find exact and near-duplicate groups in an embeddings table (content hash, then k-NN through an index)."""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import ClassVar

if __package__ in (None, ""):  # `spark-submit jobs/dedup.py` without the zip on the path
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from jobs.indexing import neighbours  # noqa: E402
from jobs.tables import publish as tables  # noqa: E402
from jobs.tables import vectors  # noqa: E402
from jobs.core.config import ConfigError, JobConfig, key, require_non_negative, require_positive  # noqa: E402
from jobs.core.paths import check_input_exists, check_output_not_input  # noqa: E402
from jobs.core.summary import JobFailed, RunSummary  # noqa: E402
from udfs.similarity import connected_groups  # noqa: E402

NAME = "dedup"
PLAN = "exact pairs by content_hash + near pairs (k-NN >= threshold) → connected components → groups"


@dataclass(frozen=True)
class Config(JobConfig):
    default_output: ClassVar[str] = "duplicate_groups"
    embeddings: str = key("", "the embeddings table (Parquet path or `table:db.name`)", flag="--embeddings")
    threshold: float = key(0.85, "cosine similarity at or above which two items are duplicates",
                           flag="--threshold")
    index: str = key("", "an index of the same embeddings; empty = build one for this run", flag="--index")
    k: int = key(10, "neighbours looked at per item")
    pairs_output: str = key("", "also write the duplicate pairs (id_a, id_b, score, kind) here")
    nprobe: int = key(0, "IVF lists searched; 0 = the index's tuned value")
    batch_size: int = key(4096, "queries per index search call")

    def validate(self) -> None:
        super().validate()
        check_input_exists("embeddings", self.embeddings)
        check_output_not_input(self.embeddings, self.output)
        if self.pairs_output:
            check_output_not_input(self.embeddings, self.pairs_output)
        if self.index:
            check_input_exists("index", self.index, globs=False)
        if not 0 < self.threshold <= 1:
            raise ConfigError(f"key 'threshold' must be in (0, 1], got {self.threshold}")
        require_positive(self, "k", "batch_size")
        require_non_negative(self, "nprobe")



def duplicate_pairs(ok, near):
    """DataFrame(id_a, id_b, score, kind) with id_a < id_b: exact (same content_hash) and near pairs."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    first = F.min("id").over(Window.partitionBy("content_hash"))
    exact = (ok.filter(F.col("content_hash").isNotNull()).select("id", first.alias("first"))
             .filter(F.col("id") != F.col("first"))
             .select(F.col("first").alias("id_a"), F.col("id").alias("id_b"),
                     F.lit(1.0).cast("float").alias("score"), F.lit("exact").alias("kind")))
    near = (near.select(F.least("query_id", "neighbor_id").alias("id_a"),
                        F.greatest("query_id", "neighbor_id").alias("id_b"), "score")
            .groupBy("id_a", "id_b").agg(F.max("score").alias("score"))
            .withColumn("kind", F.lit("near")))
    both = exact.unionByName(near)
    return both.groupBy("id_a", "id_b").agg(F.max("score").alias("score"), F.min("kind").alias("kind"))


def group_rows(spark, pairs, ok):
    """The duplicate-groups table: every member of a group of 2+, with its cosine to the representative."""
    from pyspark.sql import functions as F

    # toLocalIterator runs one Spark job per partition: the pairs' 200 shuffle partitions cost ~10 s
    # of scheduling on a small input, so they are first coalesced to one per core
    few = pairs.select("id_a", "id_b").coalesce(max(1, spark.sparkContext.defaultParallelism))
    members = connected_groups((r.id_a, r.id_b) for r in few.toLocalIterator(prefetchPartitions=True))
    groups = spark.createDataFrame(sorted(members.items()), "id string, group_id string")
    embedded = ok.select("id", "embedding")
    joined = (groups.join(embedded, "id")
              .join(embedded.select(F.col("id").alias("group_id"), F.col("embedding").alias("rep")), "group_id"))
    dot = F.aggregate(F.zip_with("embedding", "rep", lambda a, b: a * b), F.lit(0.0).cast("double"),
                      lambda acc, x: acc + x)
    return joined.select("group_id", "id", dot.cast("float").alias("score_to_representative")), len(members)


def run(spark, cfg: Config, summary: RunSummary) -> None:
    tables.prepare_output(spark, cfg.output, cfg.mode)
    with summary.timed("read embeddings"):
        ok, n_ok, summary.rows_in = neighbours.read_ok(spark, cfg.embeddings, "embeddings")
    if n_ok == 0:
        raise ConfigError(f"key 'embeddings': no rows with status ok in {cfg.embeddings!r}")
    with neighbours.index_for(spark, cfg, summary) as folder:
        meta = neighbours.checked_manifest(folder)
        neighbours.read_ok(spark, cfg.embeddings, "embeddings", model=meta.model)
        ok, left_out = vectors.usable_rows(ok, n_ok, meta.dim, meta.metric, f"the {NAME} job")
        near = neighbours.all_neighbours(ok, folder, cfg.k, cfg.nprobe, cfg.batch_size)
        with summary.timed("find pairs"):
            close = near.filter((near.status == "ok") & (near.score >= cfg.threshold))
            pairs = duplicate_pairs(ok, close).cache()
            counts = {r.kind: r["count"] for r in pairs.groupBy("kind").count().collect()}
    with summary.timed("group + write"):
        groups, members = group_rows(spark, pairs, ok)

        def verify(staged) -> None:
            if staged.count() != members:
                raise JobFailed(f"{members} duplicated items but {staged.count()} group rows")
        tables.publish(spark, groups, cfg.output, cfg.mode, summary.run_id, verify)
        if cfg.pairs_output:
            tables.prepare_output(spark, cfg.pairs_output, cfg.mode)
            tables.publish(spark, pairs, cfg.pairs_output, cfg.mode, summary.run_id, lambda staged: None)
            summary.outputs.append(cfg.pairs_output)
    pairs.unpersist()
    summary.count_ok(n_ok - sum(left_out.values()), skipped=summary.rows_in - n_ok)
    summary.statuses.update(left_out)
    summary.stats.update({"exact_pairs": counts.get("exact", 0), "near_pairs": counts.get("near", 0),
                          "duplicated_items": members})
    summary.outputs.insert(0, cfg.output)


if __name__ == "__main__":
    from jobs import cli, dedup

    sys.exit(cli.run_job(dedup, sys.argv[1:]))
