"""Evaluate retrieval (precision@k family per class) or classification (accuracy, macro-F1, confusion)."""
from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass
from typing import ClassVar, Literal

if __package__ in (None, ""):  # `spark-submit jobs/evaluate.py` without the zip on the path
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from jobs.evaluation import classification  # noqa: E402
from jobs.tables import ids  # noqa: E402
from jobs.tables import inputs  # noqa: E402
from jobs.tables import labelled  # noqa: E402
from jobs.tables import publish as tables  # noqa: E402
from jobs.core.config import ConfigError, JobConfig, key, require_non_negative  # noqa: E402
from jobs.core.paths import check_input_exists, check_output_not_input  # noqa: E402
from jobs.core.summary import RunSummary  # noqa: E402
from udfs.classification import NONE  # noqa: E402
from udfs.similarity import query_metrics  # noqa: E402

NAME = "evaluate"
PLAN = ("retrieval: join neighbours with labels → per-query metrics (grouped pandas) → mean overall and "
        "per class; classification: join labels table with gold → confusion count → metrics")
METRICS = ("precision", "rank_weighted_precision", "average_precision", "recall")
METRICS_SCHEMA = ("job string, metric string, k int, class string, predicted string, value double, "
                  "queries long")
log = logging.getLogger(__name__)


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
        inputs.check_text_keys(self)

    @property
    def gold_labels(self) -> str:
        return self.gold or self.labels



def _stem(column):
    from pyspark.sql import functions as F

    return F.regexp_extract(column, r"([^/]+?)(\.[^./]*)?$", 1)


def matched(neighbours, labels, id_match: str):
    """Neighbours with ids as the labels spell them (as they are, or file stems)."""
    from pyspark.sql import functions as F

    if id_match == "auto":
        exact = neighbours.select("query_id").distinct().join(labels, F.col("query_id") == F.col("id")).count()
        id_match = "exact" if exact else "stem"
        log.info("matching ids to labels: %s", id_match)
    if id_match == "exact":
        return neighbours
    return neighbours.select(_stem("query_id").alias("query_id"), "rank",
                             _stem("neighbor_id").alias("neighbor_id"), "score")


def per_query(neighbours, labels, k: int):
    """DataFrame(query_id, label, <metric>...) with one row per labelled query."""
    from pyspark.sql import functions as F

    sizes = labels.groupBy("label").agg((F.count("*") - 1).alias("relevant"))
    rows = (neighbours.filter(F.col("rank") <= k)
            .join(labels.select(F.col("id").alias("query_id"), "label"), "query_id")
            .join(labels.select(F.col("id").alias("neighbor_id"), F.col("label").alias("neighbor_label")),
                  "neighbor_id", "left")
            .join(sizes, "label")
            .withColumn("hit", F.coalesce(F.col("neighbor_label") == F.col("label"), F.lit(False))))

    def score(group):
        import pandas as pd

        group = group.sort_values("rank")
        values = query_metrics(group["hit"].to_numpy(), int(group["relevant"].iloc[0]), k)
        return pd.DataFrame([{"query_id": group["query_id"].iloc[0], "label": group["label"].iloc[0],
                              **values}])

    schema = "query_id string, label string, " + ", ".join(f"{m} double" for m in METRICS)
    return rows.groupBy("query_id").applyInPandas(score, schema)


def metrics_table(scores, k: int):
    """The metrics table: each metric's mean overall (class null) and per class."""
    from pyspark.sql import functions as F

    means = [F.avg(m).alias(m) for m in METRICS] + [F.count("*").alias("queries")]
    overall = scores.agg(*means).withColumn("class", F.lit(None).cast("string"))
    per_class = scores.groupBy(F.col("label").alias("class")).agg(*means)
    both = overall.unionByName(per_class)
    stack = F.expr("stack({}, {})".format(len(METRICS), ", ".join(f"'{m}@{k}', {m}" for m in METRICS)))
    return both.select(F.lit(NAME).alias("job"), stack.alias("metric", "value"), F.lit(k).alias("k"),
                       "class", F.lit(None).cast("string").alias("predicted"), "queries").select(
        "job", "metric", "k", "class", "predicted", "value", "queries")


def run(spark, cfg: Config, summary: RunSummary) -> None:
    tables.prepare_output(spark, cfg.output, cfg.mode)
    labels, repeated = labelled.read_gold(spark, cfg.gold_labels, labelled.GoldOptions(
        cfg.label_column, cfg.encoding, cfg.delimiter, "gold" if cfg.gold else "labels"))
    if repeated:
        summary.stats["gold_rows_repeated"] = repeated
    if cfg.labels_table:
        run_classification(spark, cfg, summary, labels)
    else:
        run_retrieval(spark, cfg, summary, labels)
    written = tables.read_input(spark, cfg.output, "table" if tables.is_table(cfg.output) else "parquet")
    for row in written.filter("class is null").collect():
        summary.stats[row.metric] = round(row.value, 4)
    summary.outputs.append(cfg.output)


def run_classification(spark, cfg: Config, summary: RunSummary, gold) -> None:
    from pyspark.sql import functions as F

    predictions = tables.read_input(spark, cfg.labels_table,
                                    "table" if tables.is_table(cfg.labels_table) else "parquet")
    tables.require_columns(predictions, {f"labels_table ({c})": c for c in ("id", "label", "rank")},
                           cfg.labels_table)
    first = predictions.filter(F.col("rank") == 1)
    stats = first.agg(F.count("*").alias("n"), *ids.id_stats()).first()
    ids.refuse_repeated(first, stats, stats["n"], cfg.labels_table, "labels_table")
    k = cfg.k or int(predictions.agg(F.max("rank")).first()[0] or 1)
    with summary.timed("confusion count"):
        predictions = classification.with_matching_ids(predictions, gold, cfg.id_match)
        counts, hits, extra = classification.confusion(predictions, gold, k)
    summary.rows_in = sum(counts.values()) + extra
    missing = sum(n for (_, p), n in counts.items() if p == NONE)
    summary.statuses = {"ok": sum(counts.values()) - missing, **({"no_prediction": missing} if missing else {}),
                        **({"no_gold_label": extra} if extra else {})}
    with summary.timed("write"):
        tables.publish(spark, classification.metrics_frame(spark, NAME, counts, hits, k), cfg.output,
                       cfg.mode, summary.run_id, lambda staged: None)


def run_retrieval(spark, cfg: Config, summary: RunSummary, labels) -> None:
    from pyspark.sql import functions as F

    nb = tables.read_input(spark, cfg.neighbours, "table" if tables.is_table(cfg.neighbours) else "parquet")
    tables.require_columns(nb, {f"neighbours ({c})": c for c in ("query_id", "rank", "neighbor_id")},
                           cfg.neighbours)
    k = cfg.k or int(nb.agg(F.max("rank")).first()[0] or 0)
    if k == 0:
        raise ConfigError(f"key 'neighbours': {cfg.neighbours!r} is empty")
    with summary.timed("score queries"):
        scores = per_query(matched(nb, labels, cfg.id_match), labels, k).cache()
        summary.rows_in = nb.select("query_id").distinct().count()
        scored = scores.count()
    summary.statuses = {"ok": scored, **({"unlabelled": summary.rows_in - scored}
                                        if summary.rows_in > scored else {})}
    with summary.timed("write"):
        tables.publish(spark, metrics_table(scores, k), cfg.output, cfg.mode, summary.run_id,
                       lambda staged: None)
    scores.unpersist()


if __name__ == "__main__":
    from jobs import cli, evaluate

    sys.exit(cli.run_job(evaluate, sys.argv[1:]))
