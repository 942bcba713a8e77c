"""Classification metrics of a labels table against gold labels: the confusion count in Spark, the metrics
(accuracy, top-k accuracy, per-class precision/recall/F1, macro-F1, the confusion) on the driver."""
from __future__ import annotations

import logging
from dataclasses import dataclass

from jobs.core.config import ConfigError
from jobs.tables import contracts
from udfs.classification import NONE, classification_metrics

log = logging.getLogger(__name__)
JOB = "evaluate"  # the metrics table's `job` column


@dataclass(frozen=True)
class Confusion:
    counts: dict[tuple[str, str], int]  # (gold, predicted) → items; predicted NONE: no rank-1 prediction
    hits: int                          # items whose gold label is among their top k
    extra: int                         # predicted items that have no gold label
    k: int

    @property
    def statuses(self) -> dict[str, int]:
        """The items counted: ok (predicted and with gold), no_prediction, no_gold_label."""
        missing = sum(n for (_, p), n in self.counts.items() if p == NONE)
        return {"ok": sum(self.counts.values()) - missing, **({"no_prediction": missing} if missing else {}),
                **({"no_gold_label": self.extra} if self.extra else {})}


def count_confusion(labels, gold, k: int = 0, id_match: str = "auto") -> Confusion:
    """The confusion of `labels` (a labels table, contracts.LABELS) against `gold` (DataFrame(id, label),
    labelled.gold_pairs) at cut-off `k` (0 = the deepest rank in the table), ids matched as they are or
    as file stems (`id_match`: auto, exact, stem)."""
    from pyspark.sql import functions as F

    if id_match not in ("auto", "exact", "stem"):
        raise ConfigError(f"key 'id_match' expects one of auto, exact, stem, got {id_match!r}")
    k = k or int(labels.agg(F.max("rank")).first()[0] or 1)
    counts, hits, extra = confusion(with_matching_ids(labels, gold, id_match), gold, k)
    return Confusion(counts, hits, extra, k)


def classification_table(spark, found: Confusion):
    """The metrics table (contracts.METRICS) of a confusion."""
    return metrics_frame(spark, JOB, found.counts, found.hits, found.k)


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
    return spark.createDataFrame(rows, contracts.METRICS.schema)
