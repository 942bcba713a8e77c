"""Training an index on the driver: the factory chosen and checked for the table, a seeded sample, the trained
empty index."""
from __future__ import annotations

import logging

import numpy as np

from index import factory, shards, store
from jobs.core.config import ConfigError
from jobs.indexing.options import IndexOptions
from jobs.indexing.partitions import vectors_of

log = logging.getLogger(__name__)


def choose(opts: IndexOptions, rows: int, dim: int) -> factory.Choice:
    """The factory to build (given, or `auto` for the rows, dim and memory budget), checked against the
    table (`rows` vectors of `dim`): faiss must build it for the dim and have enough rows (and
    `train_size`) to train it. ConfigError naming the key otherwise, with what would work."""
    if opts.factory != "auto":
        choice = factory.Choice(opts.factory, "given in the config")
    else:
        choice = factory.choose_factory(rows, dim, factory.parse_size(opts.memory_budget))
        if opts.merge == "ondisk" and "IVF" not in choice.factory:
            raise ConfigError(f"key 'merge': ondisk needs an IVF index but {choice.factory} suits "
                              f"{rows} rows; set factory: IVF{factory.ivf_lists(rows)},Flat")
    _check_trainable(opts, choice.factory, rows, dim)
    return choice


def _check_trainable(opts: IndexOptions, factory_string: str, rows: int, dim: int) -> None:
    table, train_size = f"{rows} rows of {dim}-d vectors", opts.train_size
    working = _working(factory_string, rows, dim, opts.memory_budget)
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


def _working(factory_string: str, rows: int, dim: int, memory_budget: str) -> str:
    """What would work for this table: factory auto's choice, and an IVF with enough rows per list."""
    try:
        auto = factory.choose_factory(rows, dim, factory.parse_size(memory_budget)).factory
    except ValueError:
        auto = "IDMap2,Flat"
    ivf = f"IVF{factory.ivf_lists(rows)},Flat"
    return f"factory: auto would use {auto}" + (f", or {ivf} keeps an IVF" if "IVF" in factory_string else "")


def sample_vectors(rows, count: int, total: int, seed: int) -> np.ndarray:
    """A seeded sample of about `count` vectors [count, dim] of `rows` (faiss_id, embedding; `total` of
    them), ordered by id so it is reproducible."""
    fraction = min(1.0, 1.5 * count / total)
    sample = rows.select("faiss_id", "embedding").sample(False, fraction, seed).toPandas()
    sample = sample.sort_values("faiss_id").head(count)
    return vectors_of(sample)


def train(rows, total: int, dim: int, factory_string: str, opts: IndexOptions, folder: str) -> bytes:
    """The trained empty index, serialized, also kept as `trained.faiss` in the work folder (for
    `resume`, and for incremental updates)."""
    uri = store.join(folder, "trained.faiss")
    if opts.resume and store.exists(uri):
        log.info("resume: reusing the trained index %s", uri)
        return store.read_bytes(uri)
    index = factory.build_empty(factory_string, dim, opts.metric)
    if not index.is_trained:
        sample = sample_vectors(rows, min(opts.train_size, total), total, opts.seed)
        log.info("training %s on %d vectors", factory_string, len(sample))
        try:
            factory.train(index, sample, opts.seed)
        except factory.FactoryError as exc:  # a kind training_need does not know
            raise ConfigError(f"key 'factory': {factory_string!r} on {total} rows of {dim}-d vectors: {exc}; "
                              f"{_working(factory_string, total, dim, opts.memory_budget)}") from None
    data = shards.serialize(index)
    store.write_bytes(uri, data)
    return data
