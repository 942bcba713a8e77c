"""Ranks in a global sort order without a window over one partition: RDD.zipWithIndex's method (a
range-partitioned sort, one count per partition, offsets) kept in the JVM."""
from __future__ import annotations

from jobs.tables.scratch import checkpoint

_POSITION_BITS = 33  # monotonically_increasing_id = partition index << 33 | position in the partition


def rank_by(df, order: list, work: str, column: str = "rank"):
    """`df` (every row, its columns) plus `column` (int): 1 + the row's position in `order` (Columns or
    names, as for `orderBy`; end it with a unique column so the order is total and the ranks
    reproducible). Equal to `row_number()` over `Window.orderBy(*order)`, which moves every row
    through one task (and warns WindowExec: No Partition Defined).

    How: `orderBy` range-partitions and sorts; monotonically_increasing_id tags each row with its
    partition and position; the result is written once to `{work}/sorted` (a scratch folder: Spark's
    range bounds come from a sample drawn again at each action, so the counts and the positions must
    come from one written sort); one count per partition reaches the driver, their running sums are the
    offsets (a broadcast table of one row per partition); rank = offset + position + 1. The result reads
    `work`: write it before the folder is removed. Raises ValueError past 2^31 - 1 rows (the contract's
    int rank)."""
    from pyspark.sql import functions as F

    spark = df.sparkSession
    tagged = checkpoint(df.orderBy(*order).withColumn("_order", F.monotonically_increasing_id()),
                        f"{work}/sorted")
    part = F.shiftright("_order", _POSITION_BITS)
    counts = sorted((int(r["part"]), int(r["count"])) for r in tagged.groupBy(part.alias("part")).count().collect())
    offsets, total = [], 0
    for index, count in counts:
        offsets.append((index, total))
        total += count
    if total >= 2 ** 31:
        raise ValueError(f"{total} rows: more than an int rank can number")
    starts = F.broadcast(spark.createDataFrame(offsets, "part long, offset long"))
    position = F.col("_order") - F.shiftleft(part, _POSITION_BITS)
    rank = (F.col("offset") + position + 1).cast("int").alias(column)
    return tagged.join(starts, part == starts["part"]).select(*df.columns, rank)
