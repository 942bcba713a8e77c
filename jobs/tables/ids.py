"""Item ids: a missing or repeated id marked on its row where items enter (every row kept), and refused
where a table's ok rows must be keyed by them.

The contract: in an embeddings table (and every table made from one) the `ok` rows have ids that are
not null and unique. The first job keeps every input row; a row whose id is null, empty or blank gets
status `missing_id` (its id stays null or as it was: a made-up id could collide with a real one, and null
never joins), and the second and later rows of an id get `duplicate_id`, naming the id, how many rows
share it and the row that is used (the first by file and line, rows with other problems last). Later
jobs read only `ok` rows, and refuse a table whose ok rows break the contract (one made elsewhere).
"""
from __future__ import annotations

from jobs.core.config import ConfigError
from udfs.status import DUPLICATE_ID, MISSING_ID

MAX_HASH = 0x7FFFFFFFFFFFFFFF  # id_hash keeps 63 bits: a non-negative int64


def mark(items, id_column: str = "id"):
    """items (id, source, ... [, status, error, _order, _where]) → the same rows and columns, status and
    error set on rows with a missing or repeated id (a status already set is kept). `_order` (sortable)
    says which row of an id comes first (default: `source`); `_where` names a row in messages (default:
    `source`); both are dropped. One aggregation over the ids; only rows of repeated ids are shuffled.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    columns = [c for c in items.columns if c not in ("_order", "_where")]
    for name in ("status", "error"):
        if name not in items.columns:
            items = items.withColumn(name, F.lit(None).cast("string"))
            columns.append(name)
    for name in ("_order", "_where"):
        if name not in items.columns:
            items = items.withColumn(name, F.col("source"))
    repeated = items.groupBy("id").agg(F.count("*").alias("_n")).filter("_n > 1 AND id IS NOT NULL")
    joined = items.join(repeated, "id", "left")
    tiebreak = F.xxhash64(*[F.col(c) for c in columns if c not in ("status", "error")])  # identical rows
    window = Window.partitionBy("id").orderBy(F.col("status").isNotNull(), "_order", tiebreak)
    shared = (joined.filter(F.col("_n").isNotNull()).withColumn("_rank", F.row_number().over(window))
              .withColumn("_first", F.first("_where").over(window)))
    alone = joined.filter(F.col("_n").isNull()).withColumn("_rank", F.lit(1)).withColumn(
        "_first", F.lit(None).cast("string"))
    rows = shared.unionByName(alone)
    blank = F.col("id").isNull() | _blank(F.col("id"))
    how = F.when(F.col("id").isNull(), "null").when(F.col("id") == "", "empty").otherwise("blank")
    missing = F.concat(F.lit(f"the id ({id_column}) is "), how, F.lit(" at "), F.col("_where"))
    repeat = F.concat(F.lit("id '"), F.col("id"), F.lit("' is on "), F.col("_n").cast("string"),
                      F.lit(" rows; only the first ("), F.col("_first"), F.lit(") is used, not this one ("),
                      F.col("_where"), F.lit(")"))
    status = F.coalesce(F.col("status"), F.when(blank, MISSING_ID).when(F.col("_rank") > 1, DUPLICATE_ID))
    error = F.coalesce(F.col("error"), F.when(blank, missing).when(F.col("_rank") > 1, repeat))
    return rows.withColumn("status", status).withColumn("error", error).select(*columns)


def id_hash(column="id"):
    """The non-negative int64 key of a string id (xxhash64, top bit cleared): what an index stores for an
    item (jobs.indexing.partitions.faiss_id_column), the same under any partitioning."""
    from pyspark.sql import functions as F

    return F.xxhash64(F.col(column) if isinstance(column, str) else column).bitwiseAND(F.lit(MAX_HASH))


def id_stats(where=None) -> list:
    """Aggregate columns for `refuse_repeated` and `hashes_apart`, to add to a pass over the rows that runs
    anyway; with `where` (a boolean column, e.g. status = ok) only the rows where it holds are counted.
    The distinct count is of the ids' hashes (id_hash: 8-byte keys, cheaper to count than strings): as
    many distinct hashes as ids means distinct ids, and also distinct index keys."""
    from pyspark.sql import functions as F

    rows = F.lit(True) if where is None else where
    item = F.when(rows, F.col("id"))
    return [F.count(item).alias("_ids"), F.count_distinct(F.when(rows, id_hash())).alias("_distinct_hashes"),
            F.count(F.when(rows & _blank(F.col("id")), 1)).alias("_blank_ids")]


def hashes_apart(stats, rows: int) -> bool:
    """Whether the `rows` rows that `id_stats()` counted (`stats`) have ids, none blank, of distinct hashes."""
    return stats["_ids"] == rows and stats["_distinct_hashes"] == rows and not stats["_blank_ids"]


def refuse_repeated(ok, stats, rows: int, location: str, key_name: str) -> None:
    """ConfigError naming (up to 10) ids that are null, blank or on several of the `rows` ok rows of
    `ok`, given the `id_stats()` of the same pass (`stats`); nothing when every ok row has its own id
    (the ids are grouped only when their hashes are not all distinct: a repeat, or two ids sharing a hash)."""
    from pyspark.sql import functions as F

    if hashes_apart(stats, rows):
        return
    wrong = (F.col("count") > 1) | F.col("id").isNull() | _blank(F.col("id"))
    worst = ok.groupBy("id").count().filter(wrong).orderBy(F.desc("count"), "id").limit(10).collect()
    if not worst:  # distinct ids, two of them of one hash: for an index to refuse (assembly.check_hashes)
        return
    listed = ", ".join(f"{'a null id' if r['id'] is None else repr(r['id'])} on {r['count']} row(s)"
                       for r in worst)
    raise ConfigError(f"key '{key_name}': the ok rows of {location!r} must each have their own id, but "
                      f"{listed}; embed the input again (embed-texts / embed-images mark repeats "
                      f"{DUPLICATE_ID} and empty ids {MISSING_ID}) or fix the table")


def _blank(column):
    """Whether a string column is empty or only (Unicode) whitespace."""
    return column.rlike(r"(?U)^\s*$")
