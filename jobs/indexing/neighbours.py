"""Neighbours tables through an index: a search of query rows, and each row of a table against the others
(through the given index, or one built for the run)."""
from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

from index import manifest, store
from index.manifest import IndexIntegrityError
from jobs.core.config import ConfigError, require_non_negative, require_positive
from jobs.core.summary import new_run_id, timed
from jobs.indexing import blocks, partitions, shard_search
from jobs.indexing.build import build_index
from jobs.tables import contracts, publish
from jobs.tables.contracts import Embeddings, EmbeddingsCheck
from udfs.reranking import METHODS, Rerank

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SearchOptions:
    """How an index is searched; the names are the search job's config keys."""

    k: int = 10                   # neighbours per query
    exclude_self: bool = False    # drop a query's own id from its neighbours
    nprobe: int = 0               # IVF lists searched; 0 = the manifest's tuned value
    ef_search: int = 0            # HNSW search depth; 0 = the manifest's
    batch_size: int = 4096        # queries per index.search call (faiss is slower on small blocks)
    num_partitions: int = 0       # Spark partitions of the queries; 0 = as read, at least the cores
    rerank: Rerank = field(default_factory=Rerank)  # the keys rerank, rerank_top, qe_top, qe_alpha, rerank_graph_k
    query_blocks: int = 0         # sharded index: query blocks (tasks = blocks x shard groups); 0 = from the query count

    def check(self) -> None:
        """ConfigError naming the option (= config key) when it is out of range."""
        require_positive(self, "k", "batch_size")
        require_non_negative(self, "nprobe", "ef_search", "num_partitions", "query_blocks")
        if self.rerank.method not in METHODS:
            raise ConfigError(f"key 'rerank': {self.rerank.method!r}; accepted: {', '.join(METHODS)}")
        for name in ("top", "qe_top", "graph_k"):
            if getattr(self.rerank, name) < 1:
                key = name if name.startswith("qe") else f"rerank_{name}"
                raise ConfigError(f"key '{key}' must be > 0, got {getattr(self.rerank, name)!r}")


def checked_manifest(folder: str, key: str = "index", metric: str = "") -> manifest.Manifest:
    """The manifest of the index at `folder` (its files are checked against their sha256 where they are
    loaded); with `metric`, the index must use it. ConfigError naming `key` otherwise."""
    try:
        meta = manifest.read(folder)
    except IndexIntegrityError as exc:
        raise ConfigError(f"key '{key}': {exc}") from None
    if metric and meta.metric != metric:
        raise ConfigError(f"key '{key}': built with metric {meta.metric}; similarity scores need an "
                          "`ip` index (cosine on normalised vectors)")
    return meta


def manifest_for(table: Embeddings, index: str) -> manifest.Manifest:
    """The manifest of the index `table`'s rows are compared through: an `ip` index of the table's model."""
    meta = checked_manifest(index, metric="ip")
    if table.model and meta.model != table.model:
        raise ConfigError(f"key 'embeddings': embedded with {[table.model]}, but the index was built from "
                          f"{meta.model!r} embeddings")
    return meta


def query_check(meta: manifest.Manifest, key: str = "queries") -> EmbeddingsCheck:
    """What query rows must be to search the index of `meta`: of its model, some of its dim."""
    return EmbeddingsCheck(key, model=meta.model, dim=meta.dim)


def search(queries: Embeddings, index: str, opts: SearchOptions = SearchOptions(), work: str = ""):
    """The neighbours table (contracts.NEIGHBOURS) of every query row: k rows (rank 1 = nearest, score =
    the index's similarity: cosine for `ip`) per `ok` query whose vector can be searched, else one row
    with its status and reason (a status from the table, one of `vectors.vector_check`, or
    no_neighbours). `queries` must have been checked with `query_check`. A one-file index: each worker
    loads it once. A sharded index: the queries are written once under `work` (a scratch folder that
    must stay until the result is written; see is_sharded), then (query block x shard group) tasks,
    merged per query (shard_search). Raises ConfigError for bad options, or re-ranking of a sharded
    index; ValueError for a sharded index without `work`. Lazy, but for the write of the queries."""
    opts.check()
    meta = manifest.read(index)
    check_rerank(meta, opts.rerank.method)
    rows = queries.searchable(meta.metric)
    if not shard_search.is_sharded(meta):
        return _neighbours(rows, index, opts)
    if not work:
        raise ValueError(f"{index} is a sharded index: its search needs a work folder for the queries")
    shard_plan = _plan(index, meta, queries.n_rows, opts, rows.sparkSession)
    partials = shard_search.searched(rows.filter("status = 'ok'"), shard_plan, store.join(work, "queries"))
    return shard_search.neighbours(partials, rows, shard_plan)


def check_rerank(meta: manifest.Manifest, method: str, key: str = "rerank") -> None:
    """ConfigError when `method` would re-rank a sharded index's results: re-ranking needs each candidate's
    vector, which only the shard holding it has (search a merged index, or rerank: none)."""
    if method != "none" and shard_search.is_sharded(meta):
        raise ConfigError(f"key '{key}': {method!r} needs the candidates' vectors, and this index is "
                          f"{len(meta.shards)} shards (merge: none) searched one per task; use rerank: none, "
                          "or an index built with merge: memory or ondisk")


def all_neighbours(rows, folder: str, opts: SearchOptions, n: int, work: str,
                   checkpoints: blocks.Checkpoints | None = None):
    """The neighbours table of `rows` (id, embedding; `n` vectors that can be searched): each row's k
    nearest *other* rows (status ok), or one no_neighbours row (`opts.exclude_self` is forced on).
    Through a sharded index the queries are written once under `work` (a scratch folder that must stay
    until the result is written), or with `checkpoints` beside each finished (block, shard group) task,
    kept there and reused by a re-run with the same inputs (blocks.searched: eager)."""
    from dataclasses import replace

    rows, opts = rows.select("id", "embedding"), replace(opts, exclude_self=True)
    meta = manifest.read(folder)
    if not shard_search.is_sharded(meta):
        return _neighbours(rows, folder, opts)
    shard_plan = _plan(folder, meta, n, opts, rows.sparkSession)
    if checkpoints is None:
        partials = shard_search.searched(rows, shard_plan, store.join(work, f"queries-{new_run_id()}"))
    else:
        partials = blocks.searched(rows, shard_plan, checkpoints)
    return shard_search.neighbours(partials, rows, shard_plan)


def _plan(folder: str, meta: manifest.Manifest, n: int, opts: SearchOptions, spark) -> shard_search.ShardPlan:
    return shard_search.plan(folder, meta, n, opts.query_blocks,
                             (opts.k, opts.exclude_self, (opts.nprobe, opts.ef_search), opts.batch_size),
                             spark.sparkContext.defaultParallelism)


def _neighbours(rows, folder: str, opts: SearchOptions):
    fn = partitions.searcher_fn(folder, opts.k, opts.exclude_self, (opts.nprobe, opts.ef_search), opts.batch_size,
                                opts.rerank)
    return partitions.spread(rows, opts.num_partitions).mapInPandas(fn, contracts.NEIGHBOURS.schema)


def compare_check(index: str) -> EmbeddingsCheck:
    """What a table compared with itself (dedup, unique) must be: with an `index`, of its model and some
    of its dim (the rest are wrong_dim rows); without, of one model and dim (an index is built of it)."""
    if not index:
        return EmbeddingsCheck(purpose="to compare")
    meta = checked_manifest(index, metric="ip")
    return EmbeddingsCheck(purpose="to compare", model=meta.model, dim=meta.dim)


@contextmanager
def index_for(table: Embeddings, index: str, work_dir: str, stages: dict[str, float] | None = None) -> Iterator[str]:
    """`index`, or (when "") a temporary index of `table` (factory auto) in a hidden folder beside
    `work_dir`, removed afterwards; `stages` gets the seconds of "build index"."""
    if index:
        yield index
        return
    spark = table.rows.sparkSession
    folder = publish.staging_location(spark, work_dir, f"index-{new_run_id()}")
    with timed({} if stages is None else stages, "build index"):
        build_index(table, folder)
    try:
        yield folder
    finally:
        publish.remove(spark, folder)
