"""Putting an index together from Spark: shards added in parallel, merged with their manifest (one way for a
build and an incremental update), recall measured, the directory published."""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import numpy as np

from index import factory, manifest, searcher, shards, store
from index.manifest import Manifest
from jobs.core.config import ConfigError
from jobs.core.summary import JobFailed
from jobs.indexing import partitions
from jobs.indexing.options import IndexOptions
from jobs.tables import publish

log = logging.getLogger(__name__)
RECALL_K = 10
SHARD_BYTES = 128 * 2**20  # vectors per shard (auto): ~87k 384-d or ~26k 1280-d float32 rows


class PoorIndexError(JobFailed):
    """recall@10 below min_recall: the index is not published."""


@dataclass(frozen=True)
class Shape:
    """What the index must hold: `rows` vectors of `dim` from `model`, built as `choice` says."""

    model: str
    dim: int
    rows: int
    choice: factory.Choice


def shard_count(spark, vector_bytes: int) -> int:
    """2 x the cluster's cores, or more so that no shard holds over SHARD_BYTES of vectors: a worker
    holds one shard at a time, so its memory stays bounded whatever the corpus size."""
    return max(2 * spark.sparkContext.defaultParallelism, -(-vector_bytes // SHARD_BYTES))


def add_shards(rows, trained: bytes, folder: str, queries: np.ndarray, opts: IndexOptions,
               vector_bytes: int = 0) -> list[dict]:
    """One shard per partition of `rows` (faiss_id, embedding; partitioned by id, sorted within), written
    by `partitions.shard_writer`: [{shard, sha256, ntotal, scores, ids}] by shard name. ConfigError when
    ids repeat (found while adding: no extra pass)."""
    spark = rows.sparkSession
    count = opts.num_shards or shard_count(spark, vector_bytes)
    shipped = spark.sparkContext.broadcast(trained), spark.sparkContext.broadcast(queries)
    fn = partitions.shard_writer(*shipped, folder, RECALL_K, opts.metric, opts.resume)
    result = (rows.select("faiss_id", "embedding").repartition(count, "faiss_id")
              .sortWithinPartitions("faiss_id").mapInPandas(fn, partitions.SHARD_SCHEMA).collect())
    for broadcast in shipped:
        broadcast.unpersist()
    repeated = sum(r["repeated"] for r in result)
    if repeated:
        raise ConfigError(f"key 'embeddings': {repeated} rows repeat an id of another row (or two ids "
                          f"share a 64-bit hash); ids must be unique")
    return sorted((r.asDict() for r in result), key=lambda r: r["shard"])


def merge(folder: str, trained: bytes, shard_rows: list[dict], shape: Shape, opts: IndexOptions,
          base: "object | None" = None) -> Manifest:
    """The shards merged as `opts.merge` says, into `base` (the previous index less its removed ids, for an
    incremental update) or the trained empty index, written into `folder` with their sha256s; the shard
    files go unless merge is none. Returns the manifest (recall not yet measured); JobFailed when the
    index does not hold `shape.rows` vectors or a shard changed after it was written."""
    meta = Manifest(model=shape.model, dim=shape.dim, metric=opts.metric, factory=shape.choice.factory,
                    ntotal=sum(r["ntotal"] for r in shard_rows), merge=opts.merge,
                    shards=[{"name": r["shard"], "sha256": r["sha256"], "ntotal": r["ntotal"]} for r in shard_rows],
                    factory_reason=shape.choice.reason)
    uris = [store.join(folder, r["shard"]) for r in shard_rows]
    for uri, row in zip(uris, shard_rows):
        if store.sha256(uri) != row["sha256"]:
            raise JobFailed(f"{uri} changed after it was written (sha256 mismatch)")
    if opts.merge != "none":
        local = store.is_local(folder)  # a local folder is written in place: no copy of the index
        scratch = store.resolve(folder)[1] if local else store.scratch_dir()
        if opts.merge == "memory":
            start = base if base is not None else shards.deserialize(trained)
            merged = shards.merge_into(start, shards.read_shards(uris))
            names = ["index.faiss"]
        else:
            paths = [store.local_copy(uri, scratch) for uri in uris]  # local shards are used in place
            merged = shards.merge_on_disk(trained, paths, os.path.join(scratch, "index.ivfdata"))
            names = ["index.faiss", "index.ivfdata"]
        shards.write_index(merged, os.path.join(scratch, "index.faiss"))
        meta.ntotal = int(merged.ntotal)
        del merged, base
        meta.files["trained.faiss"] = store.sha256(store.join(folder, "trained.faiss"))  # for incremental
        for name in names:
            store.upload(os.path.join(scratch, name), store.join(folder, name))
            meta.files[name] = store.sha256(store.join(folder, name))
        store.delete_dir(store.join(folder, "shards"))  # merged: not part of the published index
    if meta.ntotal != shape.rows:
        raise JobFailed(f"{shape.rows} ok rows but {meta.ntotal} vectors in the index")
    return meta


def measure_recall(meta: Manifest, folder: str, shard_rows: list[dict], queries: np.ndarray,
                   opts: IndexOptions) -> None:
    """recall@10 (recall@n below 10 vectors; ties count, see searcher.recall_at_k) of the built index vs
    the exact search of the query sample (`shard_rows`: each partition's exact top-k); auto-tunes nprobe."""
    exact = partitions.exact_from_shards(shard_rows, len(queries), RECALL_K, opts.metric)
    manifest.write(folder, meta)
    loaded = searcher.load(folder, opts.nprobe, opts.ef_search)
    nlist = max((factory.nlist(p) for p in loaded.parts), default=0)
    candidates = [opts.nprobe] if opts.nprobe or not nlist else \
        [p for p in (2 ** i for i in range(20)) if p < nlist] + [nlist]
    for nprobe in candidates:
        searcher.configure(loaded, nprobe, opts.ef_search)
        recall = searcher.recall_at_k(exact, searcher.search_ids(loaded, queries, RECALL_K), RECALL_K)
        log.info("recall@10 %.4f at nprobe %d", recall, nprobe)
        if recall >= opts.target_recall:
            break
    meta.recall_at_10, meta.nprobe, meta.ef_search = round(recall, 4), nprobe, opts.ef_search


def publish_index(spark, meta: Manifest, folder: str, path: str, run_id: str, min_recall: float) -> None:
    """Writes the manifest and swaps `folder` in as `path` (atomically); PoorIndexError below min_recall."""
    if meta.recall_at_10 is not None and meta.recall_at_10 < min_recall:
        raise PoorIndexError(f"recall@10 {meta.recall_at_10:.3f} is below min_recall {min_recall}; the index "
                             "was not published")
    manifest.write(folder, meta)
    publish.swap_in(spark, folder, path, run_id)
