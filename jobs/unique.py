"""Rank items by how unusual they are: each item's nearest other item and similarity, least similar first."""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import ClassVar

if __package__ in (None, ""):  # `spark-submit jobs/unique.py` without the zip: the checkout on the path
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from jobs import cli  # noqa: E402
from jobs.core.config import key  # noqa: E402
from jobs.core.summary import JobFailed, RunSummary  # noqa: E402
from jobs.indexing import neighbours, ranking  # noqa: E402
from jobs.indexing.blocks import BlockKeys, kept_until_success  # noqa: E402
from jobs.indexing.options import ComparisonKeys  # noqa: E402
from jobs.tables import contracts, publish, scratch  # noqa: E402

NAME = "unique"
PLAN = ("k-NN of every item (self excluded, exact duplicates skipped; items with only copies searched "
        "again with twice the k) → nearest other → rank ascending (range-partitioned sort + per-partition offsets)")


@dataclass(frozen=True)
class Config(ComparisonKeys, BlockKeys):
    default_output: ClassVar[str] = "uniqueness"
    k: int = key(10, "neighbours looked at per item first; an item whose k are all its exact copies is "
                 "searched again with twice the k")
    count_duplicates: bool = key(False, "let exact duplicates (same content_hash) count as nearest")

    @property
    def options(self) -> ranking.UniqueOptions:
        return ranking.UniqueOptions(self.k, self.count_duplicates, self.nprobe, self.batch_size, self.query_blocks)


def run(spark, cfg: Config, summary: RunSummary) -> None:
    publish.prepare_output(spark, cfg.output, cfg.mode)
    with summary.timed("read embeddings"):
        table = contracts.read_embeddings(spark, cfg.embeddings, neighbours.compare_check(cfg.index))
    summary.rows_in = table.n_rows

    def verify(staged) -> None:
        counts = {r["status"]: int(r["count"]) for r in staged.groupBy("status").count().collect()}
        if sum(counts.values()) != table.n_ok:
            raise JobFailed(f"{table.n_ok} items but {sum(counts.values())} uniqueness rows")
        skipped = table.n_rows - table.n_ok  # not ok in the table: not ranked
        summary.statuses = {**counts, **({"skipped": skipped} if skipped else {})}
    with (kept_until_success(spark, cfg.output, cfg.resume) as blocks,
          neighbours.index_for(table, cfg.index, cfg.output, summary.stages) as folder,
          scratch.folder(spark, cfg.output, "ranks") as work):
        with summary.timed("search"):
            ranked, cached = ranking.rank_uniqueness(table, folder, work, cfg.options, blocks)
        with summary.timed("rank + write"):
            publish.publish(spark, ranked, cfg.output, cfg.mode, summary.run_id, verify)
    for frame in cached:
        frame.unpersist()
    summary.outputs.append(cfg.output)


if __name__ == "__main__":
    sys.exit(cli.main([NAME, *sys.argv[1:]]))
