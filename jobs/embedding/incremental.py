"""Incremental re-runs of the embedding jobs: reuse output rows whose id, bytes and model are unchanged."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

from jobs.tables.contracts import EMBEDDINGS
from udfs.hashing import file_hasher
from udfs.status import DUPLICATE_ID, MISSING_ID, READ_ERROR

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Reuse:
    """How an incremental run tells an unchanged item: the label the model gives its rows now (a changed
    model remakes every row; called only when there is a previous output), the largest file hashed."""

    model_label: Callable[[], str]
    max_bytes: int


@dataclass
class Plan:
    todo: "object"           # DataFrame of items (the input's columns) to embed
    reused: "object | None"  # DataFrame of previous output rows kept as they are
    counts: dict[str, int]   # new, changed, unchanged, retried, deleted
    cached: "object | None" = None

    def release(self) -> None:
        """Unpersist after publishing: a cached plan over the same paths would be reused, stale, by
        the next run in this session."""
        if self.cached is not None:
            self.cached.unpersist()


def with_hashes(items, max_bytes: int):
    """items + `_hash`: sha256 of the text, of the bytes column, or of each file (read on the workers)."""
    from pyspark.sql import functions as F

    if "text" in items.columns:
        return items.withColumn("_hash", F.sha2(F.col("text"), 256))
    if "content" in items.columns:
        return items.withColumn("_hash", F.sha2(F.col("content"), 256))
    hashes = items.select("id", "path").mapInPandas(file_hasher(max_bytes), "id string, _hash string")
    return items.join(hashes, "id", "left")


def plan(items, previous, model: str, max_bytes: int) -> Plan:
    """Which items (`ids.mark`ed) to embed and which rows of `previous` (the embeddings table the last
    run wrote, conformed to its contract) to keep. A row is kept when its id is still in the input with
    the same content hash and the same model; read errors are always retried, and rows that came with a
    status (reading or id problems) are always made again. `max_bytes`: the largest file hashed."""
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    # rows of a missing or repeated id say nothing about an id's content: never reused, never matched
    keyed = previous.filter(F.col("id").isNotNull() & ~F.col("status").isin(MISSING_ID, DUPLICATE_ID))
    before = keyed.select("id", F.col("content_hash").alias("_prev_hash"),
                          F.col("model").alias("_prev_model"), F.col("status").alias("_prev_status"))
    joined = with_hashes(items, max_bytes).join(before, "id", "left")
    kind = (F.when(F.col("status").isNotNull(), "rejected")  # a reading or id problem: its row is remade
            .when(F.col("_prev_model").isNull() & F.col("_prev_status").isNull(), "new")
            .when(F.col("_prev_status") == READ_ERROR, "retried")
            .when((F.col("_prev_hash") == F.col("_hash")) & (F.col("_prev_model") == model), "unchanged")
            .otherwise("changed"))
    joined = joined.withColumn("_kind", kind).persist(StorageLevel.MEMORY_AND_DISK)
    counts = {row["_kind"]: int(row["count"]) for row in joined.groupBy("_kind").count().collect()}
    counts["deleted"] = keyed.join(items.select("id"), "id", "left_anti").count()
    keep = joined.filter(F.col("_kind") == "unchanged").select("id", "source")  # where it is now
    reused = keyed.drop("source").join(keep, "id").select(*EMBEDDINGS.columns)
    todo = joined.filter(F.col("_kind") != "unchanged").select(*items.columns)
    log.info("incremental: %s", ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    return Plan(todo, reused, counts, joined)
