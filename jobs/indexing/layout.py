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
    """`merge`: memory | ondisk | none (auto resolved), why, and the shards to add (= Spark partitions)."""

    merge: str
    reason: str
    shards: int


def plan(opts: IndexOptions, factory_string: str, rows: int, dim: int, cores: int) -> Layout:
    """The layout for `rows` vectors of `dim` built as `factory_string` on a cluster of `cores`.

    Shards: `num_shards`, or 2 x the cores, more so that no shard holds over `shard_bytes` of float32
    vectors (a worker holds one shard at a time: its memory is bounded whatever the corpus). `merge: auto`
    merges in memory when the whole index (estimated, factory.index_bytes) fits in `shard_bytes` (one
    shard's worth: nothing is gained by splitting it) and otherwise keeps the shards: the driver never holds
    more than a shard. ConfigError when auto would keep the shards of an incremental build."""
    limit = factory.parse_size(opts.shard_bytes)
    count = opts.num_shards or max(2 * cores, -(-rows * dim * 4 // limit))
    if opts.merge != "auto":
        return Layout(opts.merge, "given in the config", count)
    size = factory.index_bytes(factory_string, rows, dim)
    if factory.is_hnsw(factory_string):
        merge, reason = "none", "HNSW graphs cannot be merged: the shards are searched together"
    elif size <= limit:
        merge, reason = "memory", (f"the index (~{_size(size)}) fits in shard_bytes ({_size(limit)}): "
                                   "merged into one file")
    else:
        merge, reason = "none", (f"the index (~{_size(size)}) exceeds shard_bytes ({_size(limit)}): "
                                 "kept as shards, never merged on the driver")
    if opts.incremental and merge != "memory":
        raise ConfigError(f"key 'incremental': updates a merged index, but merge: auto keeps this one as "
                          f"shards ({reason}); set merge: memory or a larger shard_bytes")
    return Layout(merge, reason, count)


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
