"""What a build of an index takes (IndexOptions, checked before any work) and what it gives back (IndexInfo)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from index import factory
from index.manifest import Manifest
from jobs.core.config import ConfigError, JobConfig, key, require_non_negative, require_positive
from jobs.core.paths import check_input_exists, check_output_not_input

MERGES = ("auto", "memory", "ondisk", "none")


@dataclass(frozen=True)
class IndexOptions:
    """How an index is built; the names are build-index's config keys (see its --help for each)."""

    factory: str = "auto"         # `auto` (from rows, dim, memory_budget) or a faiss factory string
    metric: str = "ip"            # ip (cosine on normalised vectors) or l2
    memory_budget: str = "4G"     # RAM the index may take when searched in one process; guides both autos
    merge: str = "auto"           # auto (memory when the index fits memory_budget, else none), one index
                                  # file (memory), IVF lists on disk (ondisk), or keep the shards (none)
    shard_bytes: str = "128M"     # most float32 vectors a shard holds
    num_shards: int = 0           # 0 = 2 x the cluster's cores, more so no shard holds over shard_bytes
    shards_to_keep: int = 0       # a sharded index: merge the shards on the executors into this many (0 = all)
    train_size: int = 100_000     # training sample (seeded)
    seed: int = 0                 # of the training and recall samples and k-means
    nprobe: int = 0               # IVF lists searched; 0 = the smallest reaching target_recall
    ef_search: int = 64           # HNSW search depth
    target_recall: float = 0.95   # recall@10 that auto nprobe aims for
    min_recall: float = 0.0       # an index below it is not published
    recall_queries: int = 1000    # rows sampled as queries to measure recall@10
    resume: bool = False          # reuse shards an interrupted build with the same inputs finished
    incremental: bool = False     # update the index at the path (merge: memory or auto), else build it whole

    def check(self) -> None:
        """ConfigError naming the option (= config key) and what it accepts; runs before any work."""
        if self.metric not in ("ip", "l2"):
            raise ConfigError(f"key 'metric' expects one of ip, l2, got {self.metric!r}")
        if self.merge not in MERGES:
            raise ConfigError(f"key 'merge' expects one of {', '.join(MERGES)}, got {self.merge!r}")
        require_positive(self, "train_size", "recall_queries")
        require_non_negative(self, "num_shards", "shards_to_keep", "nprobe", "ef_search")
        for name in ("memory_budget", "shard_bytes"):
            try:
                if factory.parse_size(getattr(self, name)) <= 0:
                    raise ValueError(f"{getattr(self, name)!r} is not a positive size")
            except ValueError as exc:
                raise ConfigError(f"key '{name}': {exc}") from None
        try:  # that it parses; the table's rows and dim are checked when it is read
            if self.factory != "auto":
                factory.check_parses(self.factory, self.metric)
        except factory.FactoryError as exc:
            raise ConfigError(f"key 'factory': {exc}; write `auto` or a faiss factory string such as "
                              "IVF1024,Flat, OPQ48,IVF4096,PQ48 or HNSW32") from None
        if self.incremental and self.merge not in ("memory", "auto"):
            raise ConfigError("key 'incremental': needs merge: memory or auto (the previous index is loaded, "
                              "updated and merged again)")
        if factory.is_hnsw(self.factory) and self.merge not in ("none", "auto"):
            raise ConfigError("key 'merge': HNSW graphs cannot be merged; use merge: none or auto with HNSW")
        if self.shards_to_keep and (self.merge not in ("none", "auto") or factory.is_hnsw(self.factory)):
            raise ConfigError(f"key 'shards_to_keep': merges the shards of a sharded index (merge: none or "
                              f"auto) of IVF or Flat; it cannot apply to merge: {self.merge} with factory "
                              f"{self.factory} (HNSW graphs cannot be merged); set shards_to_keep: 0")
        if self.merge == "ondisk" and self.factory != "auto" and "IVF" not in self.factory:
            raise ConfigError("key 'merge': ondisk needs an IVF index (factory auto or IVF...)")
        for name in ("target_recall", "min_recall"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"key '{name}' must be between 0 and 1")


@dataclass(frozen=True)
class IndexInfo:
    """A published index: its manifest's fields, and how the table's rows were counted."""

    path: str
    model: str
    dim: int
    metric: str
    factory: str
    factory_reason: str
    merge_reason: str
    ntotal: int                    # vectors in the index
    merge: str
    shards: int                    # shard files (merged away unless merge: none)
    recall_at_10: float | None     # measured at build against an exact search (None: nothing to search)
    nprobe: int
    ef_search: int
    left_out: dict[str, int]       # ok rows not indexed, by status (non_finite, zero_vector, ...)
    statuses: dict[str, int]       # every row of the table by status: ok = indexed, left out, not ok
    updated: dict[str, int] = field(default_factory=dict)  # incremental: new, changed, unchanged, deleted
    stage_seconds: dict[str, float] = field(default_factory=dict)

    @classmethod
    def of(cls, path: str, meta: Manifest, statuses: dict[str, int], updated: dict[str, int]) -> "IndexInfo":
        names = {f.name for f in dataclasses.fields(cls)} - {"path", "shards", "statuses", "updated"}
        return cls(path=path, shards=len(meta.shards), statuses=statuses, updated=updated,
                   **{name: getattr(meta, name) for name in names})


@dataclass(frozen=True)
class ComparisonKeys(JobConfig):
    """The keys of the jobs that compare an embeddings table with itself through an index (dedup, unique);
    a subclass gives its step's typed `options` (with a `check()`)."""

    embeddings: str = key("", "the embeddings table (Parquet path or `table:db.name`)", flag="--embeddings")
    index: str = key("", "an index of the same embeddings; empty = build one for this run", flag="--index")
    nprobe: int = key(0, "IVF lists searched; 0 = the index's tuned value")
    batch_size: int = key(4096, "queries per index search call")

    def validate(self) -> None:
        super().validate()
        check_input_exists("embeddings", self.embeddings)
        check_output_not_input(self.embeddings, self.output)
        if self.index:
            check_input_exists("index", self.index, globs=False)
        self.options.check()
