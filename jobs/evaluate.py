"""Evaluate retrieval (precision@k family per class) or classification (accuracy, macro-F1, confusion)."""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import ClassVar, Literal

if __package__ in (None, ""):  # `spark-submit jobs/evaluate.py` without the zip: the checkout on the path
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from jobs import cli  # noqa: E402
from jobs.core.config import ConfigError, JobConfig, key, require_non_negative  # noqa: E402
from jobs.core.paths import check_input_exists, check_output_not_input  # noqa: E402
from jobs.core.summary import RunSummary  # noqa: E402
from jobs.evaluation import classification, retrieval  # noqa: E402
from jobs.tables import contracts, inputs, labelled, publish  # noqa: E402

NAME = "evaluate"
PLAN = ("retrieval: join neighbours with labels → per-query metrics (grouped pandas) → mean overall and "
        "per class; classification: join labels table with gold → confusion count → metrics")


@dataclass(frozen=True)
class Config(JobConfig):
    default_output: ClassVar[str] = "metrics"
    neighbours: str = key("", "retrieval: the neighbours table written by search/dedup", flag="--neighbours")
    labels_table: str = key("", "classification: the labels table written by assign-labels",
                            flag="--labels-table")
    gold: str = key("", "true labels: a JSON file ({id: label} or [{id: label}, ...]), or a table / "
                    "Parquet / CSV with id and label columns", flag="--gold")
    labels: str = key("", "the same as `gold` (kept for retrieval commands)", flag="--labels")
    k: int = key(0, "cut-off rank; 0 = the deepest rank in the neighbours or labels table", flag="--k")
    label_column: str = key("label", "label column of a tabular `labels`")
    id_match: Literal["auto", "exact", "stem"] = key(
        "auto", "match ids to labels as they are, or by file name without folder and extension")
    encoding: str = inputs.encoding_key("a gold / labels file (JSON, CSV, JSON Lines)")
    delimiter: str = inputs.delimiter_key()

    def validate(self) -> None:
        super().validate()
        if bool(self.neighbours) == bool(self.labels_table):
            raise ConfigError("give exactly one of --neighbours (retrieval) or --labels-table (classification)")
        if bool(self.gold) == bool(self.labels):
            raise ConfigError("key 'gold': give the true labels once, with --gold (or --labels)")
        scored = "neighbours" if self.neighbours else "labels_table"
        check_input_exists(scored, getattr(self, scored))
        check_input_exists("gold" if self.gold else "labels", self.gold_labels,
                           globs=not self.gold_labels.endswith(".json"))  # Python reads a .json
        check_output_not_input(getattr(self, scored), self.output)
        require_non_negative(self, "k")
        inputs.check_text_keys(self.encoding, self.delimiter)

    @property
    def gold_labels(self) -> str:
        return self.gold or self.labels


def run(spark, cfg: Config, summary: RunSummary) -> None:
    publish.prepare_output(spark, cfg.output, cfg.mode)
    gold, repeated = labelled.read_gold(spark, cfg.gold_labels, labelled.GoldOptions(
        cfg.label_column, cfg.encoding, cfg.delimiter, "gold" if cfg.gold else "labels"))
    if repeated:
        summary.stats["gold_rows_repeated"] = repeated
    if cfg.labels_table:
        labels = contracts.read_labels(spark, cfg.labels_table)
        with summary.timed("confusion count"):
            found = classification.count_confusion(labels, gold, cfg.k, cfg.id_match)
        summary.rows_in, summary.statuses = sum(found.statuses.values()), found.statuses
        metrics = classification.classification_table(spark, found)
    else:
        nb = contracts.read(spark, cfg.neighbours, contracts.NEIGHBOURS, "neighbours")
        with summary.timed("score queries"):
            scores, k = retrieval.query_scores(nb, gold, cfg.k, cfg.id_match)
            scores = scores.cache()
            summary.rows_in, failed = retrieval.query_statuses(nb)
            scored = scores.count()
        unlabelled = summary.rows_in - scored - sum(failed.values())
        summary.statuses = {"ok": scored, **failed, **({"unlabelled": unlabelled} if unlabelled > 0 else {})}
        metrics = retrieval.metrics_table(scores, k)
    with summary.timed("write"):
        publish.publish(spark, metrics, cfg.output, cfg.mode, summary.run_id, lambda staged: None)
    if not cfg.labels_table:
        scores.unpersist()
    for row in contracts.read_table(spark, cfg.output).filter("class is null").collect():
        summary.stats[row.metric] = round(row.value, 4)
    summary.outputs.append(cfg.output)


if __name__ == "__main__":
    sys.exit(cli.main([NAME, *sys.argv[1:]]))
