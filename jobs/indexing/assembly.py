"""Putting an index together from Spark: shards added in parallel, merged with their manifest (one way for a
build and an incremental update), recall measured, the directory published."""
from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass

import numpy as np

from index import factory, manifest, recall, searcher, shards, store, vectors
from index.manifest import Manifest
from jobs.core.config import ConfigError
from jobs.core.summary import JobFailed
from jobs.indexing import partitions, shard_writer, tree_merge
from jobs.indexing.options import IndexOptions
from jobs.tables import publish

log = logging.getLogger(__name__)
RECALL_K = 10


class PoorIndexError(JobFailed):
    """recall@10 below min_recall: the index is not published."""


@dataclass(frozen=True)
class Shape:
    """What the index must hold: `rows` vectors of `dim` from `model`, built as `choice` says."""

    model: str
    dim: int
    rows: int
    choice: factory.Choice


def nprobes(trained: bytes, opts: IndexOptions) -> tuple[int, ...]:
    """The nprobe values recall is measured at (index.recall.nprobe_candidates of the trained index)."""
    return tuple(recall.nprobe_candidates(factory.nlist(shards.deserialize(trained)), opts.nprobe))


def add_shards(rows, trained: bytes, folder: str, queries: np.ndarray, opts: IndexOptions,
               shuffle: bool = True, ids: bool = False) -> tuple[list[dict], dict[str, int]]:
    """`opts.num_shards` shards (> 0: layout.resolved options) of `rows` (faiss_id, embedding; with `ids` also
    id and content_hash: each shard writer then writes its usable rows as a part of ids.parquet), written by
    `shard_writer.shard_writer`: ([SHARD_SCHEMA rows as dicts] by shard name, {status: rows} of the rows left
    out because their vectors fail index.vectors.check, found while adding: only statuses that occur). With
    `shuffle` the rows are hash-partitioned by id (a shuffle of every vector); without, a shard is a group of
    whole input partitions (`coalesce`: no shuffle; layout.plan decides). Ids must be unique (check_hashes)."""
    spark = rows.sparkSession
    shipped = spark.sparkContext.broadcast(trained), spark.sparkContext.broadcast(queries)
    task = shard_writer.ShardTask(folder, RECALL_K, opts.metric, opts.resume, nprobes(trained, opts), opts.ef_search,
                                shards.deserialize(trained).d, ids)
    frame = rows.select("embedding", *shard_writer.ID_COLUMNS) if ids else rows.select("faiss_id", "embedding")
    frame = frame.repartition(opts.num_shards, "faiss_id") if shuffle else frame.coalesce(opts.num_shards)
    result = [r.asDict() for r in frame.mapInArrow(shard_writer.shard_writer(*shipped, task),
                                                   shard_writer.SHARD_SCHEMA).collect()]
    for broadcast in shipped:
        broadcast.unpersist()
    counts = np.sum([r.pop("left_out") for r in result], axis=0, dtype=np.int64) if result else []
    left_out = {name: int(n) for name, n in zip(vectors.STATUSES, counts) if n}
    return sorted((r for r in result if r["ntotal"]), key=lambda r: r["shard"]), left_out


def check_hashes(ok_rows, count: int) -> None:
    """ConfigError unless the `count` ok rows' ids (unique: contracts checked them) have distinct 63-bit
    faiss ids (partitions.faiss_id_column): a hash collision would merge two items. Reads the id column
    only and shuffles 8-byte hashes, not vectors."""
    distinct = ok_rows.select(partitions.faiss_id_column()).distinct().count()
    if distinct != count:
        raise ConfigError(f"key 'embeddings': {count - distinct} ids share a 64-bit hash (xxhash64) with "
                          "another id; rename one of each pair")


SHARD_FIELDS = ("sha256", "ntotal", "bytes", "min_id", "max_id")


def merge(folder: str, trained: bytes, shard_rows: list[dict], shape: Shape, opts: IndexOptions,
          base: "object | None" = None, whole: dict | None = None) -> Manifest:
    """The shards merged as `opts.merge` says, into `base` (the previous index less its removed ids, for an
    incremental update) or the trained empty index, written into `folder` with their sha256s; the shard
    files go unless merge is none. A build's `memory` merge comes here as `whole`, the row of the shards
    already merged on an executor (build._build: tree_merge into one group), moved into place: the driver holds no
    index (the issue-15 rule; an executor may hold what a searching process holds, memory_budget, about
    twice that while merging). An incremental update (`base`) and `ondisk` (RAM bounded: memory-mapped
    shards) merge here. Returns the manifest (recall not yet measured); JobFailed when the
    index does not hold `shape.rows` vectors or a shard changed after it was written."""
    meta = Manifest(model=shape.model, dim=shape.dim, metric=opts.metric, factory=shape.choice.factory,
                    ntotal=sum(r["ntotal"] for r in shard_rows), merge=opts.merge,
                    shards=[{"name": r["shard"], **{f: r[f] for f in SHARD_FIELDS}} for r in shard_rows],
                    factory_reason=shape.choice.reason)
    uris = [store.join(folder, r["shard"]) for r in shard_rows]
    if whole is not None:  # merged on an executor: moved here, never loaded on the driver
        store.move(store.join(folder, whole["shard"]), store.join(folder, "index.faiss"))
        meta.files["trained.faiss"] = store.sha256(store.join(folder, "trained.faiss"))  # for incremental
        meta.files["index.faiss"] = whole["sha256"]
        _drop_shard_folders(folder)
    elif opts.merge != "none":  # kept shards are not re-read on the driver: every searcher checks their sha256
        for uri, row in zip(uris, shard_rows):
            if store.sha256(uri) != row["sha256"]:
                raise JobFailed(f"{uri} changed after it was written (sha256 mismatch)")
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
        _drop_shard_folders(folder)
    if meta.ntotal != shape.rows:
        raise JobFailed(f"{shape.rows} ok rows but {meta.ntotal} vectors in the index")
    return meta


def _drop_shard_folders(folder: str) -> None:
    """The shards of a merged index go: not part of the published index."""
    for name in ("shards", tree_merge.MERGED):
        store.delete_dir(store.join(folder, name))


def measure_recall(meta: Manifest, folder: str, shard_rows: list[dict], queries: np.ndarray,
                   opts: IndexOptions) -> None:
    """recall@10 (recall@n below 10 vectors; ties count, see searcher.recall_at_k) of the built index, loaded
    here, vs the exact search of the query sample (`shard_rows`: each partition's exact top-k); auto-tunes
    nprobe. An incremental update measures this way (its merged index is on the driver anyway)."""
    exact = partitions.exact_from_shards(shard_rows, len(queries), RECALL_K, opts.metric)
    manifest.write(folder, meta)
    loaded = searcher.load(folder, opts.nprobe, opts.ef_search)
    nlist = max((factory.nlist(p) for p in loaded.parts), default=0)
    for nprobe in recall.nprobe_candidates(nlist, opts.nprobe):
        searcher.configure(loaded, nprobe, opts.ef_search)
        found = searcher.recall_at_k(exact, searcher.search_ids(loaded, queries, RECALL_K), RECALL_K)
        log.info("recall@10 %.4f at nprobe %d", found, nprobe)
        if found >= opts.target_recall:
            break
    meta.recall_at_10, meta.nprobe, meta.ef_search = round(found, 4), nprobe, opts.ef_search
    if shortfall(meta.factory, found, nprobe, opts.target_recall):
        log.warning(shortfall(meta.factory, found, nprobe, opts.target_recall))


def fold_partials(folder: str, shard_rows: list[dict], metric: str) -> recall.Partials:
    """The recall partials of `shard_rows` (add_shards' rows: each names its file in `folder`), read and folded
    one file at a time (the driver's memory does not grow with the shards); the files are then deleted."""
    found = recall.Partials(RECALL_K, metric)
    for row in shard_rows:
        found.add_bytes(store.read_bytes(store.join(folder, row["partials"])))
    store.delete_dir(store.join(folder, shard_writer.PARTIALS))
    return found


def recall_from_partials(meta: Manifest, partials: recall.Partials, n_queries: int, candidates: tuple[int, ...],
                         opts: IndexOptions) -> None:
    """recall@10 and the tuned nprobe (as measure_recall finds them) from the shards' exact and approximate
    partial top-k (fold_partials), merged (index.recall.tune): nothing loads the index."""
    found, nprobe = partials.tune(list(candidates), n_queries, opts.target_recall)
    log.info("recall@10 %.4f at nprobe %d (from %d shards' partial top-k)", found, nprobe, partials.shards)
    meta.recall_at_10, meta.nprobe, meta.ef_search = round(found, 4), nprobe, opts.ef_search
    if shortfall(meta.factory, found, nprobe, opts.target_recall):
        log.warning(shortfall(meta.factory, found, nprobe, opts.target_recall))


SHORTFALL = 0.05  # recall@10 this far below target_recall is a factory problem, not a tuning one


def shortfall(factory_string: str, found: float | None, nprobe: int, target: float) -> str:
    """What to change when the best recall@10 `found` (at `nprobe`) is over SHORTFALL below `target`
    (target_recall); "" otherwise. Logged as a warning at build, and a note in the job summary."""
    if found is None or found >= target - SHORTFALL:
        return ""
    said = (f"recall@10 {found:.3f} at best (nprobe {nprobe}) is far below target_recall {target}: "
            f"{factory_string} ")
    if re.search(r"PQ|SQ", factory_string):
        return said + ("compresses the vectors and cannot reach it; use a less compressed factory (IVF,Flat, "
                       "SQ8 or a larger PQ m), or let factory: auto keep IVF,Flat (merge: auto or none, or a "
                       "larger memory_budget)")
    if factory.is_hnsw(factory_string):
        return said + "searches too shallow a graph; raise ef_search"
    return said + "does not reach it at any nprobe tried; set nprobe: 0 or use a Flat factory"


def publish_index(spark, meta: Manifest, folder: str, path: str, run_id: str, min_recall: float) -> None:
    """Writes the manifest and swaps `folder` in as `path` (atomically); PoorIndexError below min_recall."""
    if meta.recall_at_10 is not None and meta.recall_at_10 < min_recall:
        raise PoorIndexError(f"recall@10 {meta.recall_at_10:.3f} is below min_recall {min_recall}; the index "
                             "was not published")
    manifest.write(folder, meta)
    publish.swap_in(spark, folder, path, run_id)
