"""build-index incremental: drop changed and deleted ids from the previous index, add a shard of new
and changed rows with its trained state, re-merge, re-measure recall against an exact scan."""
from __future__ import annotations

import logging

import numpy as np

from index import manifest, shards, store
from index.factory import Choice
from index.manifest import IndexIntegrityError, Manifest
from jobs.core.paths import reader_paths
from jobs.core.summary import timed
from jobs.indexing import assembly, partitions, shard_writer
from jobs.tables import samples
from jobs.indexing.assembly import Shape
from jobs.indexing.options import IndexOptions

log = logging.getLogger(__name__)


def previous(path: str, model: str, dim: int, opts: IndexOptions, factory_string: str) -> Manifest | None:
    """The index published at `path` to update, or None (the reason logged) when a full build is needed."""
    try:
        meta = manifest.read(path)
    except IndexIntegrityError as exc:
        log.info("incremental: no usable index at %s (%s); building it whole", path, exc)
        return None
    wanted = {"model": model, "dim": dim, "metric": opts.metric, "factory": factory_string, "merge": "memory"}
    differs = {k: (getattr(meta, k), v) for k, v in wanted.items() if getattr(meta, k) != v}
    has_state = "trained.faiss" in meta.files and "index.faiss" in meta.files
    if differs or not has_state:
        log.info("incremental: the previous index differs (%s%s); building it whole",
                 differs, "" if has_state else ", no trained state")
        return None
    return meta


def delta(path: str, rows) -> tuple["object", np.ndarray, dict[str, int], "object"]:
    """(rows to add: new and changed, faiss ids to remove: changed and deleted, counts, the cached
    comparison to unpersist) against the ids of the index at `path`. A row without a content hash
    counts as changed."""
    from pyspark.sql import functions as F

    spark = rows.sparkSession
    before = spark.read.parquet(*reader_paths(spark, store.join(path, manifest.IDS)))  # as named, never globbed
    if "content_hash" not in before.columns:
        before = before.withColumn("content_hash", F.lit(None).cast("string"))
    before = before.select("faiss_id", F.col("content_hash").alias("_prev_hash"), F.lit(True).alias("_indexed"))
    kind = (F.when(F.col("embedding").isNull(), "deleted").when(F.col("_indexed").isNull(), "new")
            .when(F.col("_prev_hash") == F.col("content_hash"), "unchanged").otherwise("changed"))
    marked = rows.join(before, "faiss_id", "full_outer").withColumn("_kind", kind).cache()
    counts = {r["_kind"]: int(r["count"]) for r in marked.groupBy("_kind").count().collect()}
    removed = np.array([r[0] for r in marked.filter(F.col("_kind").isin("changed", "deleted"))
                        .select("faiss_id").collect()], dtype=np.int64)
    added = marked.filter(F.col("_kind").isin("new", "changed")).select(*rows.columns)
    log.info("incremental: %s", ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    return added, removed, counts, marked


def update(path: str, prev: Manifest, rows, shape: Shape, folder: str, opts: IndexOptions,
           stages: dict[str, float]) -> tuple[Manifest, dict[str, int]]:
    """(the updated index written into `folder`, not yet published, with its manifest; the counts of new,
    changed, unchanged and deleted rows). `rows`: (faiss_id, id, embedding, content_hash) of the table."""
    with timed(stages, "compare with the previous index", "build-index"):
        added, removed, counts, marked = delta(path, rows)
    manifest.verify(path, prev)  # nothing of the previous index is read unchecked
    trained = store.read_bytes(store.join(path, "trained.faiss"))
    store.write_bytes(store.join(folder, "trained.faiss"), trained)
    queries = samples.sample_vectors(rows, opts.recall_queries, shape.rows, opts.seed + 1, opts.metric)
    changed = counts.get("new", 0) + counts.get("changed", 0)
    with timed(stages, "add shards", "build-index"):
        # rows checked already (build_index): none left out here
        shard_rows = assembly.add_shards(added, trained, folder, queries, opts)[0] if changed else []
        store.delete_dir(store.join(folder, shard_writer.PARTIALS))  # recall is measured by an exact scan below
    with timed(stages, "write ids", "build-index"):
        rows.select("faiss_id", "id", "content_hash").write.mode("overwrite").parquet(f"{folder}/{manifest.IDS}")
    with timed(stages, "merge", "build-index"):
        base = shards.deserialize(store.read_bytes(store.join(path, "index.faiss")))
        if len(removed):
            base.remove_ids(removed)
        kept = Shape(shape.model, shape.dim, shape.rows, Choice(prev.factory, prev.factory_reason))
        meta = assembly.merge(folder, trained, shard_rows, kept, opts, base)
    marked.unpersist()  # a cached plan over the same paths would be reused, stale, by a later run
    with timed(stages, "measure recall", "build-index"):
        exact = partitions.exact_scan(rows.sparkSession, rows, queries, assembly.RECALL_K, opts.metric)
        assembly.measure_recall(meta, folder, exact, queries, opts)
    return meta, counts

