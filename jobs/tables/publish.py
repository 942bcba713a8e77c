"""Job outputs: Parquet paths or metastore tables staged, checked and published atomically."""
from __future__ import annotations

import logging
from typing import Callable

from jobs.core.config import ConfigError
from jobs.core.paths import hadoop_path, is_table, reader_paths, table_name

log = logging.getLogger(__name__)


def prepare_output(spark, output: str, mode: str) -> None:
    """Before any work: honour `error-if-exists`, and finish a swap a killed run left half done."""
    if is_table(output):
        if mode == "error-if-exists" and spark.catalog.tableExists(table_name(output)):
            raise ConfigError(f"key 'output': table {output!r} exists and mode is error-if-exists; "
                              "use mode overwrite or append")
        return
    fs, path = hadoop_path(spark, output)
    staging_dir, name = _staging_dir(path), path.getName()
    leftovers = fs.listStatus(staging_dir) if fs.exists(staging_dir) else []
    if not fs.exists(path):
        olds = sorted(s.getPath() for s in leftovers if s.getPath().getName().startswith(f"{name}-old-"))
        if olds:  # killed between the two renames of a swap: the previous output comes back
            log.warning("restoring %s from the interrupted publish %s", output, olds[-1])
            _rename(fs, olds[-1], path)
    for status in leftovers:  # staging left by a killed run (one writer per output is assumed)
        if status.getPath().getName().startswith(f"{name}-staging-"):
            fs.delete(status.getPath(), True)
    if mode == "error-if-exists" and fs.exists(path):
        raise ConfigError(f"key 'output': {output!r} exists and mode is error-if-exists; "
                          "use mode overwrite or append")


def _staging_dir(path):
    """Beside the output, hidden from readers (Spark skips `_` names): staged and swapped-out data."""
    return path.getParent().suffix("/_sparkamp_staging")


def publish(spark, df, output: str, mode: str, run_id: str, verify: Callable) -> None:
    """Writes `df` to a hidden staging place, calls `verify(staged_df)`, then publishes atomically.

    Readers see the previous complete output or the new complete one. For a path, overwrite swaps
    directories by rename; append moves the new part files in. For a table, overwrite points the
    table at a new location in one metastore call; append inserts through Spark's commit protocol.
    """
    staging = staging_location(spark, output, f"staging-{run_id}")
    fs, staging_path = hadoop_path(spark, staging)
    try:
        df.write.mode("overwrite").parquet(staging)
        staged = spark.read.parquet(*reader_paths(spark, staging))
        verify(staged)
    except BaseException:
        fs.delete(staging_path, True)
        raise
    if is_table(output):
        _publish_table(spark, staged, output, mode, staging)
    else:
        _publish_path(spark, staging, output, mode, run_id)


def staging_location(spark, output: str, tag: str) -> str:
    """Where a run writes before publishing: hidden beside a path, a new version dir for a table."""
    if is_table(output):
        db, name = table_name(output).split(".")
        base = spark.conf.get("spark.sql.warehouse.dir")
        return f"{base.rstrip('/')}/sparkamp-tables/{db}.db/{name}/v-{tag}"
    _, path = hadoop_path(spark, output)
    return _staging_dir(path).toString() + f"/{path.getName()}-{tag}"


def swap_in(spark, staging: str, output: str, run_id: str) -> None:
    """Publishes a finished staging directory as `output` (replacing it atomically)."""
    _publish_path(spark, staging, output, "overwrite", run_id)


def exists(spark, location: str) -> bool:
    """A metastore table that exists, or a path (any Hadoop filesystem) that exists."""
    if is_table(location):
        return spark.catalog.tableExists(table_name(location))
    fs, path = hadoop_path(spark, location)
    return fs.exists(path)


def remove(spark, location: str) -> None:
    fs, path = hadoop_path(spark, location)
    if fs.exists(path):
        fs.delete(path, True)


def _publish_path(spark, staging: str, output: str, mode: str, run_id: str) -> None:
    fs, target = hadoop_path(spark, output)
    _, source = hadoop_path(spark, staging)
    if not fs.exists(target):
        _rename(fs, source, target)
    elif mode == "append":
        existing, staged = (spark.read.parquet(*reader_paths(spark, where)).schema for where in (output, staging))
        if existing.simpleString() != staged.simpleString():
            raise ConfigError(f"key 'mode': cannot append to {output!r}: its schema is "
                              f"{existing.simpleString()}, the new rows' is {staged.simpleString()}")
        for status in fs.listStatus(source):
            if status.getPath().getName().startswith("part-"):
                _rename(fs, status.getPath(), target.suffix("/" + status.getPath().getName()))
        fs.delete(source, True)
    else:
        old = _staging_dir(target).suffix(f"/{target.getName()}-old-{run_id}")
        _rename(fs, target, old)
        _rename(fs, source, target)
        fs.delete(old, True)
    staging_dir = _staging_dir(target)
    if fs.exists(staging_dir) and not fs.listStatus(staging_dir):
        fs.delete(staging_dir, True)


def _rename(fs, source, target) -> None:
    if not fs.rename(source, target):
        raise OSError(f"could not rename {source} to {target}")


def _table_location(spark, name: str) -> str:
    rows = spark.sql(f"DESCRIBE TABLE EXTENDED {name}").collect()
    return next((r.data_type for r in rows if r.col_name == "Location"), "")


def _publish_table(spark, staged, output: str, mode: str, staging: str) -> None:
    name = table_name(output)
    db = name.split(".")[0]
    spark.sql(f"CREATE DATABASE IF NOT EXISTS `{db}`")
    if not spark.catalog.tableExists(name):
        spark.sql(f"CREATE TABLE {name} USING parquet LOCATION '{staging}'")
        return
    if mode == "append":
        columns = spark.table(name).columns
        staged.select(*columns).write.insertInto(name)
        fs, path = hadoop_path(spark, staging)
        fs.delete(path, True)
        return
    old = _table_location(spark, name)
    if spark.table(name).schema.simpleString() != staged.schema.simpleString():
        log.warning("schema of %s changes: dropping and re-creating it (not atomic)", name)
        spark.sql(f"DROP TABLE {name}")
        spark.sql(f"CREATE TABLE {name} USING parquet LOCATION '{staging}'")
    else:
        spark.sql(f"ALTER TABLE {name} SET LOCATION '{staging}'")
        spark.sql(f"REFRESH TABLE {name}")
    if old and "/sparkamp-tables/" in old:  # only locations this code made are removed
        fs, path = hadoop_path(spark, old)
        fs.delete(path, True)
