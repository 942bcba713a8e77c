"""Duplicate groups: exact pairs (same content hash) and near pairs (k-NN at or above a threshold) joined
into connected groups — the dedup step."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from jobs.core.config import ConfigError, require_non_negative, require_positive
from jobs.indexing import neighbours
from jobs.indexing.blocks import Checkpoints
from jobs.indexing.components import connected_components
from jobs.tables.contracts import DUPLICATE_PAIRS, Embeddings


@dataclass(frozen=True)
class DedupOptions:
    """What counts as a duplicate; the names are the dedup job's config keys."""

    threshold: float = 0.85   # cosine at or above which two items are duplicates
    k: int = 10               # neighbours looked at per item
    nprobe: int = 0           # IVF lists searched; 0 = the index's tuned value
    batch_size: int = 4096    # queries per index search call
    query_blocks: int = 0     # sharded index: query blocks (tasks = blocks x shard groups); 0 = from the row count

    def check(self) -> None:
        if not 0 < self.threshold <= 1:
            raise ConfigError(f"key 'threshold' must be in (0, 1], got {self.threshold}")
        require_positive(self, "k", "batch_size")
        require_non_negative(self, "nprobe", "query_blocks")


@dataclass(frozen=True)
class Duplicates:
    groups: Any                 # the duplicate-groups table (contracts.DUPLICATE_GROUPS)
    pairs: Any                  # DataFrame(id_a, id_b, score, kind), cached: unpersist it when done
    members: int                # items in groups
    pairs_by_kind: dict[str, int]  # exact, near
    left_out: dict[str, int]    # ok rows whose vectors cannot be compared, by status


def find_duplicates(table: Embeddings, index: str, work: str, opts: DedupOptions = DedupOptions(),
                    checkpoints: Checkpoints | None = None) -> Duplicates:
    """The duplicate groups of `table`'s ok rows, searched through the index at `index` (of the same
    model: see neighbours.checked_manifest). The pairs (an edge list) are joined into groups in Spark
    (components.connected_components, checkpointed to `work`, a scratch folder: the groups read it,
    so write them before it is removed); the groups no longer need the index. Through a sharded index
    with `checkpoints`, finished (block, shard group) searches are kept and reused (neighbours.all_neighbours).
    Raises ConfigError for bad options."""
    from pyspark.sql import functions as F

    opts.check()
    meta = neighbours.manifest_for(table, index)
    good, left_out = table.usable(meta.metric, "the dedup job")
    search = neighbours.SearchOptions(opts.k, True, opts.nprobe, batch_size=opts.batch_size, query_blocks=opts.query_blocks)
    near = neighbours.all_neighbours(good, index, search, table.n_ok - sum(left_out.values()), work, checkpoints)
    close = near.filter((F.col("status") == "ok") & (F.col("score") >= opts.threshold))
    pairs = duplicate_pairs(good, close).cache()
    counts = {r["kind"]: int(r["count"]) for r in pairs.groupBy("kind").count().collect()}
    found = connected_components(pairs, work)
    return Duplicates(group_rows(found.members, good), pairs, found.count, counts, left_out)


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


def group_rows(members, ok):
    """The duplicate-groups table (group_id, id, score_to_representative) from `members` (DataFrame(id,
    group_id), group_id = the group's smallest id, its representative): each member's cosine to it."""
    from pyspark.sql import functions as F

    embedded = ok.select("id", "embedding")
    joined = (members.join(embedded, "id")
              .join(embedded.select(F.col("id").alias("group_id"), F.col("embedding").alias("rep")), "group_id"))
    dot = F.aggregate(F.zip_with("embedding", "rep", lambda a, b: a * b), F.lit(0.0).cast("double"),
                      lambda acc, x: acc + x)
    return joined.select("group_id", "id", dot.cast("float").alias("score_to_representative"))
