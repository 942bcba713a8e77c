"""A run's scratch folder: intermediate tables written as Parquet (reliable checkpoints that cut Spark's
lineage), hidden beside the output and removed when the run ends."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from jobs.core.summary import new_run_id
from jobs.tables import publish


@contextmanager
def folder(spark, work_dir: str, tag: str) -> Iterator[str]:
    """A new folder hidden beside `work_dir` (a path or `table:db.name`: see publish.staging_location),
    removed on exit, failure included. Its name starts with `<output>-staging-`, so a run killed before
    the cleanup leaves nothing that the next run's publish.prepare_output does not remove."""
    where = publish.staging_location(spark, work_dir, f"staging-{tag}-{new_run_id()}")
    try:
        yield where
    finally:
        publish.remove(spark, where)


def checkpoint(df, location: str):
    """`df` written once to `location` (Parquet) and read back: a DataFrame with no lineage before it,
    whose rows no longer change between actions (a range-partitioned sort, monotonically_increasing_id
    and shuffle order do). Reliable where `location` is shared storage, unlike `localCheckpoint` (lost
    with an executor) and without `SparkContext.setCheckpointDir`, a setting of the caller's whole
    session. Raises what the write raises (an unwritable location: Spark's error)."""
    df.write.mode("overwrite").parquet(location)
    return df.sparkSession.read.parquet(location)
