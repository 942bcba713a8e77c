"""Build a FAISS index from an embeddings table: train once, add shards in parallel, merge, publish."""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import ClassVar, Literal

if __package__ in (None, ""):  # `spark-submit jobs/build_index.py` without the zip: the checkout on the path
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from jobs import cli  # noqa: E402
from jobs.core.config import ConfigError, JobConfig, key  # noqa: E402
from jobs.core.paths import check_input_exists, check_output_not_input, is_table  # noqa: E402
from jobs.core.summary import RunSummary  # noqa: E402
from jobs.indexing.assembly import shortfall  # noqa: E402
from jobs.indexing.build import build_index, read_to_index  # noqa: E402
from jobs.indexing.options import IndexOptions  # noqa: E402
from jobs.tables import publish  # noqa: E402

NAME = "build-index"
PLAN = ("read ok rows, leave out unusable vectors → plan the shards and merge (driver) → train on a sample "
        "(driver) → add shards, each with its partial top-k of the recall queries (executors) → tree merge "
        "(executors: into one file when it fits memory_budget, or shards_to_keep) → recall from the partials "
        "→ publish")


@dataclass(frozen=True)
class Config(JobConfig):
    default_output: ClassVar[str] = "index"
    embeddings: str = key("", "the embeddings table: a Parquet path or `table:db.name`", flag="--embeddings")
    factory: str = key("auto", "`auto` or a FAISS factory string (IVF1024,Flat, OPQ48,IVF4096,PQ48, "
                       "HNSW32, Flat, ...)", flag="--factory")
    metric: Literal["ip", "l2"] = key("ip", "ip (cosine on normalised vectors) or l2", flag="--metric")
    memory_budget: str = key("4G", "RAM the index may take when searched in one process; guides `factory: "
                             "auto` and `merge: auto` (merged when the index fits it, else shards)")
    merge: Literal["auto", "memory", "ondisk", "none"] = key(
        "auto", "auto: memory when the whole index (estimated) fits memory_budget, else none; memory: one "
        "index file (merged by one executor task); ondisk: IVF lists in one file searched from disk; none: "
        "keep the shards (a sharded index); the choice and its reason go to the manifest (merge_reason)")
    shard_bytes: str = key("128M", "most float32 vectors one shard holds (e.g. 256M, 1G): sizes the shards "
                           "when num_shards is 0; a sharded index's searching process holds one at a time")
    num_shards: int = key(0, "shards (= Spark partitions) to add in; 0 = 2 x the cluster's cores, "
                          "or more so that no shard holds over shard_bytes of vectors")
    shards_to_keep: int = key(0, "a sharded index: merge its shards on the executors (a tree merge, in "
                              "parallel tasks) into this many larger shards; 0 = keep every shard; "
                              "IVF and Flat only (HNSW graphs cannot be merged)")
    train_size: int = key(100_000, "training sample size (seeded)")
    seed: int = key(0, "seed for the training and recall samples and k-means")
    nprobe: int = key(0, "IVF lists searched; 0 = the smallest reaching target_recall at build")
    ef_search: int = key(64, "HNSW search depth")
    target_recall: float = key(0.95, "recall@10 that auto nprobe aims for")
    min_recall: float = key(0.0, "refuse to publish an index whose recall@10 is below this")
    recall_queries: int = key(1000, "seeded sample of rows used as queries to measure recall@10")
    resume: bool = key(False, "reuse shards finished by an earlier, interrupted run with the same inputs")
    incremental: bool = key(False, "update the index at `output`: remove changed and deleted ids, add a "
                            "shard of new and changed rows with its trained state, re-merge (merge: "
                            "memory, or auto when it merges); a full build when there is none or it differs")

    def validate(self) -> None:
        super().validate()
        check_input_exists("embeddings", self.embeddings)
        check_output_not_input(self.embeddings, self.output)
        if is_table(self.output):
            raise ConfigError("key 'output': an index is a directory (a path or URI), not a table")
        self.options.check()

    @property
    def options(self) -> IndexOptions:
        return IndexOptions(**{name: getattr(self, name) for name in IndexOptions.__dataclass_fields__})


def run(spark, cfg: Config, summary: RunSummary) -> None:
    publish.prepare_output(spark, cfg.output, "overwrite")
    with summary.timed("read embeddings"):
        table = read_to_index(spark, cfg.embeddings, cfg.options)
    info = build_index(table, cfg.output, cfg.options, stages=summary.stages, run_id=summary.run_id)
    summary.rows_in, summary.statuses = table.n_rows, info.statuses
    summary.stats.update({"recall_at_10": info.recall_at_10 or 0.0, "nprobe": info.nprobe, "shards": info.shards,
                          **{f"incremental_{k}": v for k, v in info.updated.items()}})
    summary.notes.update({"factory": f"{info.factory} ({info.factory_reason})",
                          "merge": f"{info.merge} ({info.merge_reason})"})
    if shortfall(info.factory, info.recall_at_10, info.nprobe, cfg.target_recall):
        summary.notes["recall"] = shortfall(info.factory, info.recall_at_10, info.nprobe, cfg.target_recall)
    summary.outputs.append(cfg.output)


if __name__ == "__main__":
    sys.exit(cli.main([NAME, *sys.argv[1:]]))
