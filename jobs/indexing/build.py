"""The stages of build-index: read and check rows, train, add shards, merge, measure recall, publish."""
from __future__ import annotations

import dataclasses
import logging
import os

import numpy as np

from jobs.embedding import steps as embedding
from jobs.indexing import partitions as indexing
from jobs.core import session
from jobs.tables import publish as tables
from jobs.tables import vectors
from jobs.embedding.steps import RowsInfo
from jobs.core.config import ConfigError
from jobs.core.summary import JobFailed
from index import factory, manifest, searcher, shards, store
from index.manifest import Manifest

log = logging.getLogger(__name__)
RECALL_K = 10


class PoorIndexError(JobFailed):
    """recall@10 below min_recall: the index is not published."""


def read_ok_rows(spark, cfg) -> tuple["object", RowsInfo, dict[str, int]]:
    """(DataFrame(faiss_id, id, embedding, content_hash) of the `ok` rows whose vectors can be indexed,
    their RowsInfo, {status: count} of the `ok` rows left out: NaN, infinite or all-zero vectors)."""
    from pyspark.sql import functions as F

    ok, info = embedding.read_ok_embeddings(spark, cfg.embeddings, "to index", "build one index per model")
    ok, left_out = vectors.usable_rows(ok, info.rows, info.dim, cfg.metric, "the index")
    hashes = F.col("content_hash") if "content_hash" in ok.columns else F.lit(None).cast("string")
    rows = ok.select(indexing.faiss_id_column(), "id", "embedding", hashes.alias("content_hash"))
    return rows, dataclasses.replace(info, rows=info.rows - sum(left_out.values())), left_out


SHARD_BYTES = 128 * 2**20  # vectors per shard (auto): ~87k 384-d or ~26k 1280-d float32 rows


def choose(cfg, info: RowsInfo) -> factory.Choice:
    """The factory to build (given, or `auto` for the rows, dim and memory budget), checked against
    the table: faiss must build it for the dim and have enough rows (and `train_size`) to train it."""
    if cfg.factory != "auto":
        choice = factory.Choice(cfg.factory, "given in the config")
    else:
        try:
            choice = factory.choose_factory(info.rows, info.dim, factory.parse_size(cfg.memory_budget))
        except ValueError as exc:
            raise ConfigError(f"key 'memory_budget': {exc}") from None
        if cfg.merge == "ondisk" and "IVF" not in choice.factory:
            raise ConfigError(f"key 'merge': ondisk needs an IVF index but {choice.factory} suits "
                              f"{info.rows} rows; set factory: IVF{factory.ivf_lists(info.rows)},Flat")
    _check_trainable(cfg, info, choice.factory)
    return choice


def _check_trainable(cfg, info: RowsInfo, factory_string: str) -> None:
    table = f"{info.rows} rows of {info.dim}-d vectors"
    try:
        need = factory.training_need(factory.build_empty(factory_string, info.dim, cfg.metric))
    except factory.FactoryError as exc:
        raise ConfigError(f"key 'factory': {exc} (the table has {table}); {_working(cfg, info)}") from None
    if need.points > info.rows:
        raise ConfigError(f"key 'factory': {factory_string!r} cannot be trained on {table}: it needs at least "
                          f"{need.points} training vectors for {need.what} (faiss advises {need.advised}); "
                          + _working(cfg, info))
    if need.points > cfg.train_size:
        raise ConfigError(f"key 'train_size': {factory_string} needs at least {need.points} training "
                          f"vectors for {need.what}, train_size is {cfg.train_size}")
    if min(cfg.train_size, info.rows) < need.advised:
        log.warning("%s trains on %d vectors; faiss advises %d for %s (a poorer index; recall is measured)",
                    factory_string, min(cfg.train_size, info.rows), need.advised, need.what)


def _working(cfg, info: RowsInfo) -> str:
    """What would work for this table: factory auto's choice, and an IVF with enough rows per list."""
    try:
        auto = factory.choose_factory(info.rows, info.dim, factory.parse_size(cfg.memory_budget)).factory
    except ValueError:
        auto = "IDMap2,Flat"
    ivf = f"IVF{factory.ivf_lists(info.rows)},Flat"
    return f"factory: auto would use {auto}" + (f", or {ivf} keeps an IVF" if "IVF" in cfg.factory else "")


def work_folder(spark, cfg, run_id: str, build_key: str) -> str:
    """A hidden folder beside the output; deterministic (resumable) when `resume` is on."""
    tag = f"build-{build_key}" if cfg.resume else f"staging-{run_id}"
    return tables.staging_location(spark, cfg.output, tag)


def sample_vectors(rows, count: int, total: int, seed: int) -> np.ndarray:
    """A seeded sample of about `count` vectors [count, dim], ordered by id so it is reproducible."""
    fraction = min(1.0, 1.5 * count / total)
    sample = rows.select("faiss_id", "embedding").sample(False, fraction, seed).toPandas()
    sample = sample.sort_values("faiss_id").head(count)
    return indexing.vectors_of(sample)


def train(spark, cfg, rows, info: RowsInfo, factory_string: str, folder: str) -> bytes:
    """The trained empty index, serialized (kept in the work folder for `resume`)."""
    uri = store.join(folder, "trained.faiss")
    if cfg.resume and store.exists(uri):
        log.info("resume: reusing the trained index %s", uri)
        return store.read_bytes(uri)
    index = factory.build_empty(factory_string, info.dim, cfg.metric)
    if not index.is_trained:
        sample = sample_vectors(rows, min(cfg.train_size, info.rows), info.rows, cfg.seed)
        log.info("training %s on %d vectors", factory_string, len(sample))
        try:
            factory.train(index, sample, cfg.seed)
        except factory.FactoryError as exc:  # a kind training_need does not know
            raise ConfigError(f"key 'factory': {factory_string!r} on {info.rows} rows of {info.dim}-d "
                              f"vectors: {exc}; {_working(cfg, info)}") from None
    data = shards.serialize(index)
    store.write_bytes(uri, data)
    return data


def shard_count(spark, vector_bytes: int) -> int:
    """2 x the cluster's cores, or more so that no shard holds over SHARD_BYTES of vectors: a worker
    holds one shard at a time, so its memory stays bounded whatever the corpus size."""
    return max(2 * spark.sparkContext.defaultParallelism, -(-vector_bytes // SHARD_BYTES))


def add_shards(spark, cfg, rows, trained: bytes, folder: str, queries: np.ndarray,
               vector_bytes: int = 0) -> list[dict]:
    """One shard per partition (partitioned by id, sorted within): [{shard, sha256, ntotal, ...}]."""
    count = cfg.num_shards or shard_count(spark, vector_bytes)
    session.set_arrow_batch(spark, 8192)  # exact top-k per block: fewer, larger blocks
    shipped = spark.sparkContext.broadcast(trained), spark.sparkContext.broadcast(queries)
    fn = indexing.shard_writer(*shipped, folder, RECALL_K, cfg.metric, cfg.resume)
    result = (rows.select("faiss_id", "embedding").repartition(count, "faiss_id")
              .sortWithinPartitions("faiss_id").mapInPandas(fn, indexing.SHARD_SCHEMA).collect())
    for broadcast in shipped:
        broadcast.unpersist()
    repeated = sum(r["repeated"] for r in result)
    if repeated:  # found while adding (rows are partitioned and sorted by id): no extra pass
        raise ConfigError(f"key 'embeddings': {repeated} rows repeat an id of another row (or two ids "
                          f"share a 64-bit hash) in {cfg.embeddings!r}; ids must be unique")
    return sorted((r.asDict() for r in result), key=lambda r: r["shard"])


def merge(cfg, trained: bytes, folder: str, shard_rows: list[dict], choice: factory.Choice,
          info: RowsInfo) -> Manifest:
    """Merges the shards as `cfg.merge` says and returns the manifest (recall not yet measured)."""
    meta = Manifest(model=info.model, dim=info.dim, metric=cfg.metric, factory=choice.factory,
                    ntotal=sum(r["ntotal"] for r in shard_rows), merge=cfg.merge,
                    shards=[{"name": r["shard"], "sha256": r["sha256"], "ntotal": r["ntotal"]}
                            for r in shard_rows], factory_reason=choice.reason)
    if meta.ntotal != info.rows:
        raise JobFailed(f"{info.rows} ok rows but {meta.ntotal} vectors in the shards")
    if cfg.merge == "none":
        return meta
    uris = [store.join(folder, r["shard"]) for r in shard_rows]
    for uri, row in zip(uris, shard_rows):
        if store.sha256(uri) != row["sha256"]:
            raise JobFailed(f"{uri} changed after it was written (sha256 mismatch)")
    local = store.is_local(folder)  # a local folder is written in place: no copy of the index
    scratch = store.resolve(folder)[1] if local else store.scratch_dir()
    local_index = os.path.join(scratch, "index.faiss")
    if cfg.merge == "memory":
        merged = shards.merge_in_memory(trained, shards.read_shards(uris))
        shards.write_index(merged, local_index)
        names = ["index.faiss"]
    else:
        paths = [store.local_copy(uri, scratch) for uri in uris]  # local shards are used in place
        merged = shards.merge_on_disk(trained, paths, os.path.join(scratch, "index.ivfdata"))
        shards.write_index(merged, local_index)
        names = ["index.faiss", "index.ivfdata"]
    del merged
    meta.files["trained.faiss"] = store.sha256(store.join(folder, "trained.faiss"))  # for incremental
    for name in names:
        store.upload(os.path.join(scratch, name), store.join(folder, name))
        meta.files[name] = store.sha256(store.join(folder, name))
    fs, path = store.resolve(store.join(folder, "shards"))
    fs.delete_dir(path)  # merged: the shards are not part of the published index
    return meta


def measure_recall(cfg, meta: Manifest, folder: str, shard_rows: list[dict], queries: np.ndarray) -> None:
    """recall@10 (recall@n below 10 vectors; ties count, see searcher.recall_at_k) of the built index
    vs exact search over the query sample; auto-tunes nprobe."""
    exact = indexing.exact_from_shards(shard_rows, len(queries), RECALL_K, cfg.metric)
    manifest.write(folder, meta)
    loaded = searcher.load(folder, cfg.nprobe, cfg.ef_search)
    nlist = max((factory.nlist(p) for p in loaded.parts), default=0)
    candidates = [cfg.nprobe] if cfg.nprobe or not nlist else \
        [p for p in (2 ** i for i in range(20)) if p < nlist] + [nlist]
    for nprobe in candidates:
        searcher.configure(loaded, nprobe, cfg.ef_search)
        recall = searcher.recall_at_k(exact, searcher.search_ids(loaded, queries, RECALL_K), RECALL_K)
        log.info("recall@10 %.4f at nprobe %d", recall, nprobe)
        if recall >= cfg.target_recall:
            break
    meta.recall_at_10, meta.nprobe, meta.ef_search = round(recall, 4), nprobe, cfg.ef_search


def publish(spark, cfg, meta: Manifest, folder: str, run_id: str) -> None:
    manifest.write(folder, meta)
    tables.swap_in(spark, folder, cfg.output, run_id)


def discard(spark, cfg, folder: str) -> None:
    """A failed build's work folder goes, unless `resume` wants its shards next time."""
    if not cfg.resume:
        tables.remove(spark, folder)
