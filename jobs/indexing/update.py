"""build-index incremental: drop changed and deleted ids from the previous index, add a shard of new
and changed rows with its trained state, re-merge, re-measure recall against an exact scan."""
from __future__ import annotations

import logging
import os

import numpy as np

from jobs.indexing import build as index_build
from jobs.indexing import partitions as indexing
from jobs.core.paths import reader_paths
from index import manifest, shards, store
from index.manifest import IndexIntegrityError, Manifest

log = logging.getLogger(__name__)


def previous(cfg, info, factory_string: str) -> Manifest | None:
    """The published index to update, or None (with the reason logged) when a full build is needed."""
    try:
        meta = manifest.read(cfg.output)
    except IndexIntegrityError as exc:
        log.info("incremental: no usable index at %s (%s); building it whole", cfg.output, exc)
        return None
    wanted = {"model": info.model, "dim": info.dim, "metric": cfg.metric, "factory": factory_string,
              "merge": "memory"}
    differs = {k: (getattr(meta, k), v) for k, v in wanted.items() if getattr(meta, k) != v}
    has_state = "trained.faiss" in meta.files and "index.faiss" in meta.files
    if differs or not has_state:
        log.info("incremental: the previous index differs (%s%s); building it whole",
                 differs, "" if has_state else ", no trained state")
        return None
    return meta


def delta(spark, output: str, rows) -> tuple["object", np.ndarray, dict[str, int], "object"]:
    """(rows to add: new and changed, faiss ids to remove: changed and deleted, counts, the cached
    comparison to unpersist). A row without a content hash counts as changed."""
    from pyspark.sql import functions as F

    before = spark.read.parquet(*reader_paths(spark, store.join(output, manifest.IDS)))  # as named, never globbed
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


def update(spark, cfg, prev: Manifest, rows, info, folder: str, summary) -> Manifest:
    """The updated index written into `folder` (not yet published), with its manifest."""
    with summary.timed("compare with the previous index"):
        added, removed, counts, marked = delta(spark, cfg.output, rows)
    summary.stats.update({f"incremental_{k}": v for k, v in counts.items()})
    manifest.verify(cfg.output, prev)  # nothing of the previous index is read unchecked
    trained = store.read_bytes(store.join(cfg.output, "trained.faiss"))
    store.write_bytes(store.join(folder, "trained.faiss"), trained)
    queries = index_build.sample_vectors(rows, cfg.recall_queries, info.rows, cfg.seed + 1)
    with summary.timed("add shards"):
        added_bytes = (counts.get("new", 0) + counts.get("changed", 0)) * info.dim * 4
        shard_rows = index_build.add_shards(spark, cfg, added, trained, folder, queries, added_bytes) \
            if counts.get("new", 0) + counts.get("changed", 0) else []
    with summary.timed("write ids"):
        rows.select("faiss_id", "id", "content_hash").write.mode("overwrite").parquet(f"{folder}/{manifest.IDS}")
    with summary.timed("merge"):
        base = shards.deserialize(store.read_bytes(store.join(cfg.output, "index.faiss")))
        if len(removed):
            base.remove_ids(removed)
        merged = shards.merge_into(base, shards.read_shards([store.join(folder, r["shard"]) for r in shard_rows]))
        scratch = store.resolve(folder)[1] if store.is_local(folder) else store.scratch_dir()
        shards.write_index(merged, os.path.join(scratch, "index.faiss"))
        ntotal = int(merged.ntotal)
        del merged, base
        store.upload(os.path.join(scratch, "index.faiss"), store.join(folder, "index.faiss"))
        if shard_rows:
            fs, path = store.resolve(store.join(folder, "shards"))
            fs.delete_dir(path)
    marked.unpersist()  # a cached plan over the same paths would be reused, stale, by a later run
    if ntotal != info.rows:
        raise index_build.JobFailed(f"{info.rows} ok rows but {ntotal} vectors after the update")
    meta = Manifest(model=info.model, dim=info.dim, metric=cfg.metric, factory=prev.factory, ntotal=ntotal,
                    merge="memory", shards=[{"name": r["shard"], "sha256": r["sha256"], "ntotal": r["ntotal"]}
                                            for r in shard_rows], factory_reason=prev.factory_reason)
    for name in ("index.faiss", "trained.faiss"):
        meta.files[name] = store.sha256(store.join(folder, name))
    with summary.timed("measure recall"):
        exact = indexing.exact_scan(spark, rows, queries, index_build.RECALL_K, cfg.metric)
        index_build.measure_recall(cfg, meta, folder, exact, queries)
    return meta
