"""Evaluate retrieval: precision@k, rank-weighted precision@k, mAP@k and recall@k, overall and per class."""
from __future__ import annotations

import json
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

if __package__ in (None, ""):  # `spark-submit jobs/evaluate.py` without the zip on the path
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from jobs import tables  # noqa: E402
from jobs.config import ConfigError, JobConfig, key, require_non_negative  # noqa: E402
from jobs.paths import check_input_exists, check_output_not_input  # noqa: E402
from jobs.summary import RunSummary  # noqa: E402
from udfs.similarity import query_metrics  # noqa: E402

NAME = "evaluate"
PLAN = "join neighbours with labels → per-query metrics (grouped pandas) → mean overall and per class"
METRICS = ("precision", "rank_weighted_precision", "average_precision", "recall")
METRICS_SCHEMA = "job string, metric string, k int, class string, value double, queries long"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Config(JobConfig):
    default_output: ClassVar[str] = "metrics"
    neighbours: str = key("", "the neighbours table written by search/dedup", flag="--neighbours")
    labels: str = key("", "labels: a JSON file ({id: label} or [{id: label}, ...]), or a table / "
                      "Parquet / CSV with id and label columns", flag="--labels")
    k: int = key(0, "cut-off rank; 0 = the deepest rank in the neighbours table", flag="--k")
    label_column: str = key("label", "label column of a tabular `labels`")
    id_match: Literal["auto", "exact", "stem"] = key(
        "auto", "match ids to labels as they are, or by file name without folder and extension")

    def validate(self) -> None:
        super().validate()
        check_input_exists("neighbours", self.neighbours)
        check_input_exists("labels", self.labels)
        check_output_not_input(self.neighbours, self.output)
        require_non_negative(self, "k")



def read_labels(spark, cfg: Config):
    """DataFrame(id, label) from a JSON mapping / list of mappings, or a table with id + label."""
    from pyspark.sql import functions as F

    if cfg.labels.endswith(".json") and not tables.is_table(cfg.labels):
        data = json.loads(Path(cfg.labels).read_text())
        pairs = data.items() if isinstance(data, dict) else \
            [item for entry in data for item in entry.items()] if isinstance(data, list) else None
        if pairs is None:
            raise ConfigError(f"key 'labels': {cfg.labels!r} must hold {{id: label}} or [{{id: label}}]")
        return spark.createDataFrame([(str(i), str(label)) for i, label in pairs], "id string, label string")
    df = tables.read_input(spark, cfg.labels, tables.detect_format(cfg.labels, "auto"))
    tables.require_columns(df, {"labels (id)": "id", "label_column": cfg.label_column}, cfg.labels)
    return df.select(F.col("id").cast("string"), F.col(cfg.label_column).cast("string").alias("label"))


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
                       "class", "queries").select("job", "metric", "k", "class", "value", "queries")


def run(spark, cfg: Config, summary: RunSummary) -> None:
    from pyspark.sql import functions as F

    tables.prepare_output(spark, cfg.output, cfg.mode)
    labels = read_labels(spark, cfg)
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
    written = tables.read_input(spark, cfg.output, "table" if tables.is_table(cfg.output) else "parquet")
    for row in written.filter("class is null").collect():
        summary.stats[row.metric] = round(row.value, 4)
    scores.unpersist()
    summary.outputs.append(cfg.output)


if __name__ == "__main__":
    from jobs import cli, evaluate

    sys.exit(cli.run_job(evaluate, sys.argv[1:]))
