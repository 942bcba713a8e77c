"""Find exact and near-duplicate groups in an embeddings table (content hash, then k-NN through an index)."""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import ClassVar

if __package__ in (None, ""):  # `spark-submit jobs/dedup.py` without the zip: the checkout on the path
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from jobs import cli  # noqa: E402
from jobs.core.config import key  # noqa: E402
from jobs.core.paths import check_output_not_input  # noqa: E402
from jobs.core.summary import JobFailed, RunSummary  # noqa: E402
from jobs.indexing import groups, neighbours  # noqa: E402
from jobs.indexing.blocks import BlockKeys, kept_until_success  # noqa: E402
from jobs.indexing.options import ComparisonKeys  # noqa: E402
from jobs.tables import contracts, publish, scratch  # noqa: E402

NAME = "dedup"
PLAN = ("exact pairs by content_hash + near pairs (k-NN >= threshold) → connected components in Spark "
        "(large-star / small-star) → groups")


@dataclass(frozen=True)
class Config(ComparisonKeys, BlockKeys):
    default_output: ClassVar[str] = "duplicate_groups"
    threshold: float = key(0.85, "cosine similarity at or above which two items are duplicates",
                           flag="--threshold")
    k: int = key(10, "neighbours looked at per item")
    pairs_output: str = key("", "also write the duplicate pairs (id_a, id_b, score, kind) here")

    def validate(self) -> None:
        super().validate()
        if self.pairs_output:
            check_output_not_input(self.embeddings, self.pairs_output)

    @property
    def options(self) -> groups.DedupOptions:
        return groups.DedupOptions(self.threshold, self.k, self.nprobe, self.batch_size, self.query_blocks)


def run(spark, cfg: Config, summary: RunSummary) -> None:
    publish.prepare_output(spark, cfg.output, cfg.mode)
    with summary.timed("read embeddings"):
        table = contracts.read_embeddings(spark, cfg.embeddings, neighbours.compare_check(cfg.index))
    with (kept_until_success(spark, cfg.output, cfg.resume) as blocks,
          neighbours.index_for(table, cfg.index, cfg.output, summary.stages) as folder,
          scratch.folder(spark, cfg.output, "groups") as work):
        with summary.timed("find pairs + groups"):
            found = groups.find_duplicates(table, folder, work, cfg.options, blocks)

        def verify(staged) -> None:
            if staged.count() != found.members:
                raise JobFailed(f"{found.members} duplicated items but {staged.count()} group rows")
        with summary.timed("score + write"):
            publish.publish(spark, found.groups, cfg.output, cfg.mode, summary.run_id, verify)
            if cfg.pairs_output:
                publish.prepare_output(spark, cfg.pairs_output, cfg.mode)
                publish.publish(spark, found.pairs, cfg.pairs_output, cfg.mode, summary.run_id, lambda staged: None)
    found.pairs.unpersist()
    summary.rows_in = table.n_rows
    summary.count_ok(table.n_ok - sum(found.left_out.values()), skipped=table.n_rows - table.n_ok)
    summary.statuses.update(found.left_out)
    summary.stats.update({"exact_pairs": found.pairs_by_kind.get("exact", 0),
                          "near_pairs": found.pairs_by_kind.get("near", 0), "duplicated_items": found.members})
    summary.outputs += [cfg.output] + ([cfg.pairs_output] if cfg.pairs_output else [])


if __name__ == "__main__":
    sys.exit(cli.main([NAME, *sys.argv[1:]]))
