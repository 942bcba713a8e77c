"""The layout of an index being built (driver side): how many shards, whether they are merged (`merge: auto`
decided and explained), and which shards a tree merge on the executors puts together."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from index import factory
from jobs.core.config import ConfigError
from jobs.indexing.options import IndexOptions


@dataclass(frozen=True)
class Layout:
    """`merge`: memory | ondisk | none (auto resolved), why, the shards to add (= Spark partitions), and
    whether the rows are shuffled into them (else each shard is a group of whole input partitions)."""

    merge: str
    reason: str
    shards: int
    shuffle: bool = True


def plan(opts: IndexOptions, factory_string: str, rows: int, dim: int, cores: int, inputs: int) -> Layout:
    """The layout for `rows` vectors of `dim` built as `factory_string` on a cluster of `cores`, read as
    `inputs` Spark partitions.

    Shards: `num_shards` (hash-partitioned by id: a shuffle), or else about `shard_bytes` of float32 vectors
    each (a worker holds one shard at a time: its memory is bounded whatever the corpus), at least 2 x the
    cores: when the input has at least that many partitions, on average no larger, a shard is a group of
    whole input partitions (`coalesce`: no shuffle of the vectors, sizes follow the input's); otherwise the
    rows are hash-partitioned by id.

    `merge: auto` and `factory: auto` (training.choose) follow one rule: the index is merged into one file
    when the whole index (estimated, factory.index_bytes) fits `memory_budget`, the RAM an index may take in
    one searching process (searched whole, each query probes one index: the fast path); otherwise it is
    kept as shards of at most shard_bytes, each searched by a process holding one shard at a time. The
    merge runs on an executor, not the driver (assembly.merge). ConfigError when auto would keep the
    shards of an incremental build."""
    limit, vector_bytes = factory.parse_size(opts.shard_bytes), rows * dim * 4
    count, shuffle = _shards(opts.num_shards, vector_bytes, limit, cores, inputs)
    if opts.merge != "auto":
        return Layout(opts.merge, "given in the config", count, shuffle)
    size, budget = factory.index_bytes(factory_string, rows, dim), factory.parse_size(opts.memory_budget)
    if factory.is_hnsw(factory_string):
        merge, reason = "none", "HNSW graphs cannot be merged: the shards are searched together"
    elif size <= budget:
        merge, reason = "memory", (f"the index (~{_size(size)}) fits memory_budget ({_size(budget)}): "
                                   "merged into one file")
    else:
        merge, reason = "none", (f"the index (~{_size(size)}) exceeds memory_budget ({_size(budget)}): "
                                 f"kept as {count} shards of at most shard_bytes ({_size(limit)}) of vectors")
    if opts.incremental and merge != "memory":
        raise ConfigError(f"key 'incremental': updates a merged index, but merge: auto keeps this one as "
                          f"shards ({reason}); set merge: memory or a larger memory_budget")
    return Layout(merge, reason, count, shuffle)


def _shards(given: int, vector_bytes: int, limit: int, cores: int, inputs: int) -> tuple[int, bool]:
    """(shards, shuffle): see `plan`."""
    if given:
        return given, True
    wanted = max(2 * cores, -(-vector_bytes // limit))
    per_input = vector_bytes / max(inputs, 1)
    if per_input > limit or inputs < wanted:
        return wanted, True  # input partitions too large to be shards, or too few to share the work
    together = max(1, int(limit // max(per_input, 1)))  # whole input partitions per shard
    return max(-(-inputs // together), wanted), False


def _size(count: int) -> str:
    return f"{count / 2**20:,.0f} MiB" if count >= 2**20 else f"{count / 2**10:,.0f} KiB"


def resolved(opts: IndexOptions, layout: Layout) -> IndexOptions:
    """`opts` with merge and num_shards as the layout decided."""
    return dataclasses.replace(opts, merge=layout.merge, num_shards=layout.shards)


def groups(shard_count: int, keep: int) -> list[list[int]]:
    """Positions of `shard_count` shards (sorted by name) in `keep` groups of consecutive shards, as even as
    possible; one group per shard when keep is 0 or not below the count."""
    if not keep or keep >= shard_count:
        return [[i] for i in range(shard_count)]
    return [list(part) for part in np.array_split(np.arange(shard_count), keep)]
