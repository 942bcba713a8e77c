"""Duplicate groups: exact pairs (same content hash) and near pairs (k-NN at or above a threshold) joined
into connected groups — the dedup step."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from jobs.core.config import ConfigError, require_non_negative, require_positive
from jobs.indexing import neighbours
from jobs.tables.contracts import DUPLICATE_PAIRS, Embeddings
from udfs.similarity import connected_groups


@dataclass(frozen=True)
class DedupOptions:
    """What counts as a duplicate; the names are the dedup job's config keys."""

    threshold: float = 0.85   # cosine at or above which two items are duplicates
    k: int = 10               # neighbours looked at per item
    nprobe: int = 0           # IVF lists searched; 0 = the index's tuned value
    batch_size: int = 4096    # queries per index search call

    def check(self) -> None:
        if not 0 < self.threshold <= 1:
            raise ConfigError(f"key 'threshold' must be in (0, 1], got {self.threshold}")
        require_positive(self, "k", "batch_size")
        require_non_negative(self, "nprobe")


@dataclass(frozen=True)
class Duplicates:
    groups: Any                 # the duplicate-groups table (contracts.DUPLICATE_GROUPS)
    pairs: Any                  # DataFrame(id_a, id_b, score, kind), cached: unpersist it when done
    members: int                # items in groups
    pairs_by_kind: dict[str, int]  # exact, near
    left_out: dict[str, int]    # ok rows whose vectors cannot be compared, by status


def find_duplicates(table: Embeddings, index: str, opts: DedupOptions = DedupOptions()) -> Duplicates:
    """The duplicate groups of `table`'s ok rows, searched through the index at `index` (of the same
    model: see neighbours.checked_manifest). The groups are computed on the driver from the pairs (an
    edge list, union-find), so the result no longer needs the index."""
    from pyspark.sql import functions as F

    opts.check()
    meta = neighbours.manifest_for(table, index)
    good, left_out = table.usable(meta.metric, "the dedup job")
    near = neighbours.all_neighbours(good, index, opts.k, opts.nprobe, opts.batch_size)
    close = near.filter((F.col("status") == "ok") & (F.col("score") >= opts.threshold))
    pairs = duplicate_pairs(good, close).cache()
    counts = {r["kind"]: int(r["count"]) for r in pairs.groupBy("kind").count().collect()}
    groups, members = group_rows(pairs, good)
    return Duplicates(groups, pairs, members, counts, left_out)


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
    return (both.groupBy("id_a", "id_b").agg(F.max("score").alias("score"), F.min("kind").alias("kind"))
            .select(*DUPLICATE_PAIRS.columns))


def group_rows(pairs, ok):
    """(the duplicate-groups table: every member of a group of 2+, with its cosine to the representative
    (the group's smallest id); the number of members)."""
    from pyspark.sql import functions as F

    spark = pairs.sparkSession
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
