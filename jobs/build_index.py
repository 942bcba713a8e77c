"""Build a FAISS index from an embeddings table: train once, add shards in parallel, merge, publish."""
from __future__ import annotations

import dataclasses
import logging
import os
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import ClassVar, Literal

if __package__ in (None, ""):  # `spark-submit jobs/build_index.py` without the zip on the path
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from jobs.indexing import build as index_build  # noqa: E402
from jobs.indexing import update as index_update  # noqa: E402
from jobs.indexing import partitions as indexing  # noqa: E402
from jobs.tables import publish as tables  # noqa: E402
from jobs.core.config import ConfigError, JobConfig, key, require_non_negative, require_positive  # noqa: E402
from jobs.core.paths import check_input_exists, check_output_not_input  # noqa: E402
from jobs.core.summary import RunSummary  # noqa: E402
from index import factory  # noqa: E402

NAME = "build-index"
PLAN = ("read ok rows, leave out unusable vectors → train on a sample (driver) → add shards (executors) "
        "→ merge → recall → publish")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Config(JobConfig):
    default_output: ClassVar[str] = "index"
    embeddings: str = key("", "the embeddings table: a Parquet path or `table:db.name`", flag="--embeddings")
    factory: str = key("auto", "`auto` or a FAISS factory string (IVF1024,Flat, OPQ48,IVF4096,PQ48, "
                       "HNSW32, Flat, ...)", flag="--factory")
    metric: Literal["ip", "l2"] = key("ip", "ip (cosine on normalised vectors) or l2", flag="--metric")
    memory_budget: str = key("4G", "RAM the index may take when searched; guides `factory: auto`")
    merge: Literal["memory", "ondisk", "none"] = key("memory", "one index file, IVF lists on disk, or "
                                                     "keep the shards and search them together")
    num_shards: int = key(0, "shards (= Spark partitions) to add in; 0 = 2 x the cluster's cores, "
                          "or more so that no shard holds over 128 MiB of vectors")
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
                            "memory); a full build when there is none or it differs")

    def validate(self) -> None:
        super().validate()
        check_input_exists("embeddings", self.embeddings)
        check_output_not_input(self.embeddings, self.output)
        if tables.is_table(self.output):
            raise ConfigError("key 'output': an index is a directory (a path or URI), not a table")
        require_positive(self, "train_size", "recall_queries")
        require_non_negative(self, "num_shards", "nprobe", "ef_search")
        try:
            factory.parse_size(self.memory_budget)
        except ValueError as exc:
            raise ConfigError(f"key 'memory_budget': {exc}") from None
        try:  # that it parses; the table's rows and dim are checked when it is read
            if self.factory != "auto":
                factory.check_parses(self.factory, self.metric)
        except factory.FactoryError as exc:
            raise ConfigError(f"key 'factory': {exc}; write `auto` or a faiss factory string such as "
                              "IVF1024,Flat, OPQ48,IVF4096,PQ48 or HNSW32") from None
        if self.incremental and self.merge != "memory":
            raise ConfigError("key 'incremental': needs merge: memory (the previous index is loaded, "
                              "updated and merged again)")
        if factory.is_hnsw(self.factory) and self.merge != "none":
            raise ConfigError("key 'merge': HNSW graphs cannot be merged; use merge: none with HNSW")
        if self.merge == "ondisk" and self.factory != "auto" and "IVF" not in self.factory:
            raise ConfigError("key 'merge': ondisk needs an IVF index (factory auto or IVF...)")
        for name in ("target_recall", "min_recall"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"key '{name}' must be between 0 and 1")



def run(spark, cfg: Config, summary: RunSummary) -> None:
    tables.prepare_output(spark, cfg.output, "overwrite")
    with summary.timed("read embeddings"):
        rows, info, left_out = index_build.read_ok_rows(spark, cfg)
    summary.rows_in = info.rows + sum(left_out.values())
    choice = index_build.choose(cfg, info)
    log.info("index: %s (%s)", choice.factory, choice.reason)
    key_parts = {"embeddings": cfg.embeddings, "factory": choice.factory, "metric": cfg.metric,
                 "seed": cfg.seed, "shards": cfg.num_shards, "rows": info.rows}
    folder = index_build.work_folder(spark, cfg, summary.run_id, indexing.build_key(key_parts))
    prev = index_update.previous(cfg, info, choice.factory) if cfg.incremental else None
    try:
        if prev is None:
            meta = _build(spark, cfg, summary, rows, info, choice, folder)
        else:
            meta = index_update.update(spark, cfg, prev, rows, info, folder, summary)
        meta.left_out = left_out
        _publish(spark, cfg, summary, meta, folder)
    except BaseException:
        index_build.discard(spark, cfg, folder)
        raise
    summary.statuses = {"ok": meta.ntotal, **left_out}
    summary.stats.update({"recall_at_10": meta.recall_at_10 or 0.0, "nprobe": meta.nprobe,
                          "shards": len(meta.shards)})
    summary.outputs.append(cfg.output)


def _build(spark, cfg: Config, summary: RunSummary, rows, info, choice, folder: str):
    with summary.timed("train"):
        trained = index_build.train(spark, cfg, rows, info, choice.factory, folder)
    queries = index_build.sample_vectors(rows, cfg.recall_queries, info.rows, cfg.seed + 1)
    with summary.timed("add shards"):
        shard_rows = index_build.add_shards(spark, cfg, rows, trained, folder, queries, info.rows * info.dim * 4)
    with summary.timed("write ids"):
        rows.select("faiss_id", "id", "content_hash").write.mode("overwrite").parquet(f"{folder}/ids.parquet")
    with summary.timed("merge"):
        meta = index_build.merge(cfg, trained, folder, shard_rows, choice, info)
    with summary.timed("measure recall"):
        index_build.measure_recall(cfg, meta, folder, shard_rows, queries)
    return meta


def _publish(spark, cfg: Config, summary: RunSummary, meta, folder: str) -> None:
    meta.source, meta.config = cfg.embeddings, dataclasses.asdict(cfg)
    if meta.recall_at_10 is not None and meta.recall_at_10 < cfg.min_recall:
        raise index_build.PoorIndexError(f"recall@10 {meta.recall_at_10:.3f} is below min_recall "
                                         f"{cfg.min_recall}; the index was not published")
    meta.stage_seconds = {k: round(v, 3) for k, v in summary.stages.items()}
    meta.created_at = datetime.now(timezone.utc).isoformat()
    with summary.timed("publish"):
        index_build.publish(spark, cfg, meta, folder, summary.run_id)


if __name__ == "__main__":
    from jobs import build_index, cli

    sys.exit(cli.run_job(build_index, sys.argv[1:]))
