"""Retrieval metrics of a neighbours table against gold labels: per query in Spark (grouped pandas), then each
metric's mean overall and per class."""
from __future__ import annotations

import logging

from jobs.core.config import ConfigError
from jobs.evaluation.classification import JOB
from udfs.similarity import query_metrics

log = logging.getLogger(__name__)
METRICS = ("precision", "rank_weighted_precision", "average_precision", "recall")


def _stem(column):
    from pyspark.sql import functions as F

    return F.regexp_extract(column, r"([^/]+?)(\.[^./]*)?$", 1)


def matched(neighbours, labels, id_match: str):
    """Neighbours with ids as the labels spell them (as they are, or file stems; auto: whichever joins)."""
    from pyspark.sql import functions as F

    if id_match not in ("auto", "exact", "stem"):
        raise ConfigError(f"key 'id_match' expects one of auto, exact, stem, got {id_match!r}")
    if id_match == "auto":
        exact = neighbours.select("query_id").distinct().join(labels, F.col("query_id") == F.col("id")).count()
        id_match = "exact" if exact else "stem"
        log.info("matching ids to labels: %s", id_match)
    if id_match == "exact":
        return neighbours
    return neighbours.select(_stem("query_id").alias("query_id"), "rank",
                             _stem("neighbor_id").alias("neighbor_id"), "score")


def query_scores(neighbours, gold, k: int = 0, id_match: str = "auto") -> tuple["object", int]:
    """(DataFrame(query_id, label, <metric>...) with one row per labelled query of `neighbours` (a
    neighbours table) against `gold` (DataFrame(id, label)) at cut-off `k`, that k): precision@k,
    rank-weighted precision, average precision and recall (udfs.similarity.query_metrics). k = 0: the
    deepest rank in the table; ConfigError when the table is empty."""
    from pyspark.sql import functions as F

    k = k or int(neighbours.agg(F.max("rank")).first()[0] or 0)
    if k == 0:
        raise ConfigError("key 'neighbours': the neighbours table is empty")
    return per_query(matched(neighbours, gold, id_match), gold, k), k


def query_statuses(neighbours) -> tuple[int, dict[str, int]]:
    """(queries, {status: queries}) of a neighbours table: the distinct query ids of its ok rows plus one
    per status row (a query that failed upstream, e.g. decode_error, has one row with its status and no
    neighbour, and is counted under that status, not as unlabelled, whether or not the gold labels name
    it; a null id counts too). One aggregation; a row per status reaches the driver."""
    from pyspark.sql import functions as F

    status = F.coalesce(F.col("status"), F.lit("ok")).alias("status")
    counts = neighbours.groupBy(status).agg(F.count("*").alias("rows"),
                                            F.countDistinct("query_id").alias("ids")).collect()
    found = {row["status"]: row["ids"] if row["status"] == "ok" else row["rows"] for row in counts}
    return sum(found.values()), {name: n for name, n in found.items() if name != "ok"}


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
    """The metrics table (contracts.METRICS): each metric's mean overall (class null) and per class."""
    from pyspark.sql import functions as F

    means = [F.avg(m).alias(m) for m in METRICS] + [F.count("*").alias("queries")]
    overall = scores.agg(*means).withColumn("class", F.lit(None).cast("string"))
    per_class = scores.groupBy(F.col("label").alias("class")).agg(*means)
    both = overall.unionByName(per_class)
    stack = F.expr("stack({}, {})".format(len(METRICS), ", ".join(f"'{m}@{k}', {m}" for m in METRICS)))
    return both.select(F.lit(JOB).alias("job"), stack.alias("metric", "value"), F.lit(k).alias("k"),
                       "class", F.lit(None).cast("string").alias("predicted"), "queries").select(
        "job", "metric", "k", "class", "predicted", "value", "queries")
