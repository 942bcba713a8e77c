"""Training an index on the driver: the factory chosen and checked for the table, a seeded sample, the trained
empty index."""
from __future__ import annotations

import logging
import re
from typing import Callable

import numpy as np

from index import factory, shards, store
from jobs.core.config import ConfigError
from jobs.indexing.options import IndexOptions
from jobs.tables.samples import Sampling

log = logging.getLogger(__name__)
UNTRAINED = r"(IDMap2?,)?(Flat|HNSW\d+(,Flat)?)"  # factories with nothing to train
# most rows the read pass samples: Spark gathers them in one aggregation buffer, then as one task's result; the
# default train_size (100k x 384-d, 150 MB) overflowed a 1 GiB driver heap there (a pass of its own streams them)
READ_PASS_ROWS = 10_000


def choose(opts: IndexOptions, rows: int, dim: int) -> factory.Choice:
    """The factory to build (given, or `auto` for the rows, dim and memory budget), checked against the
    table (`rows` vectors of `dim`): faiss must build it for the dim and have enough rows (and
    `train_size`) to train it. ConfigError naming the key otherwise, with what would work. `auto` keeps
    IVF-Flat over the budget when the index may be kept as shards (`may_shard`: layout.plan then keeps it
    as shards); it compresses (PQ) only an index that must be merged."""
    if opts.factory != "auto":
        choice = factory.Choice(opts.factory, "given in the config")
    else:
        choice = factory.choose_factory(rows, dim, factory.parse_size(opts.memory_budget), sharded=may_shard(opts))
        if opts.merge == "ondisk" and "IVF" not in choice.factory:
            raise ConfigError(f"key 'merge': ondisk needs an IVF index but {choice.factory} suits "
                              f"{rows} rows; set factory: IVF{factory.ivf_lists(rows)},Flat")
    _check_trainable(opts, choice.factory, rows, dim)
    return choice


def may_shard(opts: IndexOptions) -> bool:
    """Whether the build may publish a sharded index: merge none, or auto on a full build (an incremental
    update needs a merged index)."""
    return opts.merge == "none" or (opts.merge == "auto" and not opts.incremental)


def _check_trainable(opts: IndexOptions, factory_string: str, rows: int, dim: int) -> None:
    table, train_size = f"{rows} rows of {dim}-d vectors", opts.train_size
    working = _working(factory_string, rows, dim, opts)
    try:
        need = factory.training_need(factory.build_empty(factory_string, dim, opts.metric))
    except factory.FactoryError as exc:
        raise ConfigError(f"key 'factory': {exc} (the table has {table}); {working}") from None
    if need.points > rows:
        raise ConfigError(f"key 'factory': {factory_string!r} cannot be trained on {table}: it needs at least "
                          f"{need.points} training vectors for {need.what} (faiss advises {need.advised}); "
                          + working)
    if need.points > train_size:
        raise ConfigError(f"key 'train_size': {factory_string} needs at least {need.points} training "
                          f"vectors for {need.what}, train_size is {train_size}")
    if min(train_size, rows) < need.advised:
        log.warning("%s trains on %d vectors; faiss advises %d for %s (a poorer index; recall is measured)",
                    factory_string, min(train_size, rows), need.advised, need.what)


def _working(factory_string: str, rows: int, dim: int, opts: IndexOptions) -> str:
    """What would work for this table: factory auto's choice, and an IVF with enough rows per list."""
    try:
        auto = factory.choose_factory(rows, dim, factory.parse_size(opts.memory_budget),
                                      sharded=may_shard(opts)).factory
    except ValueError:
        auto = "IDMap2,Flat"
    ivf = f"IVF{factory.ivf_lists(rows)},Flat"
    return f"factory: auto would use {auto}" + (f", or {ivf} keeps an IVF" if "IVF" in factory_string else "")


def sampling(opts: IndexOptions, count: Callable[[], int]) -> Sampling | None:
    """The samples a build takes in its read pass of `count()` rows (contracts.check_embeddings), seeds `seed`
    (training) and `seed` + 1 (recall queries): both when train_size + recall_queries is at most
    READ_PASS_ROWS (no training sample when `factory: auto` keeps the table Flat, at most FLAT_MAX_ROWS rows),
    the queries alone for a Flat or HNSW factory (nothing to train); otherwise None, without counting: a pass
    of its own reads every vector for the training sample and takes the queries with it (the same rows)."""
    untrained = bool(re.fullmatch(UNTRAINED, opts.factory))
    if not untrained and opts.train_size + opts.recall_queries > READ_PASS_ROWS:
        return None  # not counted (auto on a table it keeps Flat then samples its queries in their own pass)
    total = count()
    flat = untrained or (opts.factory == "auto" and total <= factory.FLAT_MAX_ROWS)
    return Sampling((0 if flat else opts.train_size, opts.recall_queries), (opts.seed, opts.seed + 1), opts.metric,
                    total)


def to_train(opts: IndexOptions, factory_string: str, dim: int, total: int, folder: str) -> int:
    """How many sampled vectors training needs: min(train_size, total), or 0 when `resume` reuses the
    trained index or the factory needs no training (Flat)."""
    if (opts.resume and store.exists(store.join(folder, "trained.faiss"))) or \
            factory.build_empty(factory_string, dim, opts.metric).is_trained:
        return 0
    return min(opts.train_size, total)


def train(sample: np.ndarray, total: int, dim: int, factory_string: str, opts: IndexOptions, folder: str) -> bytes:
    """The index trained on `sample` [n, dim] (n = to_train's count; none: reused or nothing to train),
    serialized, also kept as `trained.faiss` in the work folder (for `resume`, and for incremental
    updates). ConfigError when faiss refuses the sample."""
    uri = store.join(folder, "trained.faiss")
    if opts.resume and store.exists(uri):
        log.info("resume: reusing the trained index %s", uri)
        return store.read_bytes(uri)
    index = factory.build_empty(factory_string, dim, opts.metric)
    if not index.is_trained:
        log.info("training %s on %d vectors", factory_string, len(sample))
        try:
            factory.train(index, sample, opts.seed)
        except factory.FactoryError as exc:  # a kind training_need does not know
            raise ConfigError(f"key 'factory': {factory_string!r} on {total} rows of {dim}-d vectors: {exc}; "
                              f"{_working(factory_string, total, dim, opts)}") from None
    data = shards.serialize(index)
    store.write_bytes(uri, data)
    return data
