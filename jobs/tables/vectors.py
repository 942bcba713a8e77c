"""Which embedding rows can be indexed or searched: the vector checks, and splitting a table into
usable rows and counted, logged bad ones."""
from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)
SHOWN_IDS = 10  # bad rows named in the log, per status


def vector_check(dim: int, metric: str) -> tuple[Any, Any]:
    """(status, error) Columns for each row's `embedding`: `ok`, or why it cannot be indexed or searched:
    missing_vector (null), wrong_dim (not `dim` values), non_finite (a NaN, an infinity or a null
    value), zero_vector (all zeros: no direction, so no cosine and no L2 normalisation; `ip` only).
    `dim` 0: the length is not checked (a table's dims checked as a whole, contracts.check_embeddings).
    index.vectors.check is its twin on Arrow blocks in numpy (a build's shard writer); a test holds them equal."""
    from pyspark.sql import functions as F

    # Spark orders NaN above every number, so array_max is NaN when any value is; it skips nulls, so
    # one light lambda looks for them. Counted over 100k x 384 floats (local[2], median of 4): 2.9 s,
    # vs 1.8 s to read the column and 3.8 s for one lambda summing the squares
    emb = F.col("embedding")
    top, bottom = F.array_max(emb), F.array_min(emb)
    checks = [(emb.isNull(), "missing_vector", F.lit("status ok but no embedding")),
              ((F.size(emb) != dim) if dim else F.lit(False), "wrong_dim",
               F.format_string(f"the embedding has %d values; the index holds {dim}-d vectors", F.size(emb))),
              (F.isnan(top) | (top == float("inf")) | (bottom == float("-inf"))
               | F.exists(emb, lambda x: x.isNull()), "non_finite",
               F.lit("the embedding holds NaN, infinite or null values")),
              (((top == 0) & (bottom == 0)) if metric == "ip" else F.lit(False), "zero_vector",
               F.lit("the embedding is all zeros: it has no direction, so it cannot be L2-normalised "
                     "and has no cosine similarity"))]
    status, error = F, F
    for condition, name, reason in checks:
        status, error = status.when(condition, name), error.when(condition, reason)
    return status.otherwise("ok"), error.otherwise(F.lit(None).cast("string"))


def usable_rows(df, rows: int, dim: int, metric: str, where: str,
                counted: dict[str, int] | None = None) -> tuple[Any, dict[str, int]]:
    """(the rows of `df` (`rows` of them) whose vectors pass `vector_check`, {status: count} of the
    others). One counting pass, none when `counted` gives the failing rows by status already (found by a
    build's shard writer, index.vectors.check); the rows are filtered (the check evaluated again) only when
    some fail. The first ids (SHOWN_IDS) of each failing status are logged as left out of `where` (e.g. "the
    index"). Raises ConfigError when no row passes: there is nothing to index or compare."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    from jobs.core.config import ConfigError

    status = vector_check(dim, metric)[0]
    if counted is None:
        counted = {r["status"]: int(r["count"])
                   for r in failed_rows(df, dim, metric).groupBy("status").count().collect()}
    bad = {name: count for name, count in counted.items() if count}
    if not bad:
        return df, {}
    counts = ", ".join(f"{name}: {count}" for name, count in sorted(bad.items()))
    if sum(bad.values()) == rows:
        raise ConfigError(f"key 'embeddings': none of its {rows} ok rows has a vector that can be used "
                          f"({counts})")
    first = F.row_number().over(Window.partitionBy("status").orderBy("id"))  # each status's first ids
    shown = failed_rows(df, dim, metric).withColumn("_n", first).filter(F.col("_n") <= SHOWN_IDS).collect()
    for name, count in sorted(bad.items()):
        ids = sorted(r["id"] for r in shown if r["status"] == name)
        reason = next(r["error"] for r in shown if r["status"] == name)
        log.warning("%d rows left out of %s as %s (%s): %s%s", count, where, name, reason,
                    ", ".join(map(repr, ids)), ", ..." if count > len(ids) else "")
    return df.filter(status == "ok"), bad


def failed_rows(df, dim: int, metric: str):
    """DataFrame(id, status, error) of the rows of `df` whose vectors fail `vector_check`."""
    from pyspark.sql import functions as F

    status, error = vector_check(dim, metric)
    return df.select("id", status.alias("status"), error.alias("error")).filter(F.col("status") != "ok")
