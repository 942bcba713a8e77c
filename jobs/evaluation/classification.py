"""Evaluate a labels table against gold labels: the confusion count in Spark, the metrics on the driver."""
from __future__ import annotations

import logging

from udfs.classification import NONE, classification_metrics

log = logging.getLogger(__name__)


def with_matching_ids(predictions, gold, id_match: str):
    """predictions with ids spelled as in `gold`: as they are, or as file stems (auto: whichever joins)."""
    from pyspark.sql import functions as F

    if id_match == "auto":
        exact = predictions.select("id").distinct().join(gold, "id").limit(1).count()
        id_match = "exact" if exact else "stem"
        log.info("matching ids to gold labels: %s", id_match)
    if id_match == "exact":
        return predictions
    return predictions.withColumn("id", F.regexp_extract("id", r"([^/]+?)(\.[^./]*)?$", 1))


def confusion(predictions, gold, k: int) -> tuple[dict, int, int]:
    """({(gold, predicted): items}, items whose gold label is in their top k, predicted items without
    gold). Gold items without a rank-1 prediction count as predicted NONE."""
    from pyspark.sql import functions as F

    first = predictions.filter(F.col("rank") == 1).select("id", F.col("label").alias("predicted"))
    pairs = (gold.join(first, "id", "left")
             .select("label", F.coalesce("predicted", F.lit(NONE)).alias("predicted"))
             .groupBy("label", "predicted").count().collect())
    counts = {(row["label"], row["predicted"]): int(row["count"]) for row in pairs}
    hits = (predictions.filter(F.col("rank") <= k).select("id", F.col("label").alias("predicted"))
            .join(gold, "id").filter(F.col("predicted") == F.col("label")).select("id").distinct().count())
    extra = predictions.select("id").distinct().join(gold, "id", "left_anti").count()
    return counts, hits, extra


def metrics_frame(spark, job: str, counts: dict, hits: int, k: int):
    """The metrics table rows (job, metric, k, class, predicted, value, queries)."""
    rows = [(job, m.metric, k if m.metric.startswith("top_") else 1, m.label, m.predicted, float(m.value),
             m.items) for m in classification_metrics(counts, hits, k)]
    return spark.createDataFrame(rows, "job string, metric string, k int, class string, predicted string, "
                                       "value double, queries long")
