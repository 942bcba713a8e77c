"""The SparkSession a job runs in: local[*] by default, the launcher's master under spark-submit."""
from __future__ import annotations

import logging
import os
import sys
from contextlib import contextmanager
from typing import Iterator

from jobs.core.config import JobConfig

log = logging.getLogger(__name__)


def get_session(cfg: JobConfig, app_name: str, metastore: bool) -> tuple["object", bool]:
    """(session, owned): an active session is reused and not ours to stop; else a new one is built.

    `metastore` turns on Hive support with a local Derby metastore under `cfg.warehouse`, unless the
    platform configures its own metastore.
    """
    from pyspark import SparkContext
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is None and SparkContext._active_spark_context is not None:
        # the JVM keeps the active session per thread, so a caller's session (a notebook, a test) can be
        # running yet not "active" here: a context already running in this process is never ours to stop
        active = SparkSession.builder.getOrCreate()
    if active is not None:
        for name, value in cfg.spark.items():
            _set_runtime(active, name, value)
        return active, False
    under_launcher = "PYSPARK_GATEWAY_PORT" in os.environ  # spark-submit / pyspark shell
    master = cfg.master or ("" if under_launcher else "local[*]")
    if master.startswith("local"):
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # workers need this venv's pandas/torch
    warehouse = os.path.abspath(cfg.warehouse)
    builder = SparkSession.builder.appName(f"sparkamp {app_name}")
    if master:
        builder = builder.master(master)
    settings = {
        "spark.ui.showConsoleProgress": "true",
        "spark.sql.warehouse.dir": os.path.join(warehouse, "spark-warehouse"),
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.python.worker.reuse": "true",  # keeps each worker's model cache across tasks
    }
    if metastore:
        builder = builder.enableHiveSupport()
    if metastore and not under_launcher:  # under spark-submit the platform's metastore settings apply
        settings["spark.hadoop.javax.jdo.option.ConnectionURL"] = (
            f"jdbc:derby:;databaseName={os.path.join(warehouse, 'metastore_db')};create=true")
        settings["spark.driver.extraJavaOptions"] = f"-Dderby.system.home={warehouse}"
    if master.startswith("local"):
        # Spark's default of 200 shuffle partitions makes each small aggregation 200 tasks (dedup and
        # evaluate ran 3-4x slower on demo-sized tables); one machine needs a few per core
        settings["spark.sql.shuffle.partitions"] = str(2 * local_cores(master))
    settings.update(cfg.spark)
    for name, value in settings.items():
        builder = builder.config(name, value)
    log.info("starting Spark session (master %s)", master or "from the launcher")
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark, True


def local_cores(master: str) -> int:
    """Cores of a `local`, `local[N]`, `local[*]` or `local[N,F]` master."""
    inside = master[len("local["):-1].split(",")[0] if master.startswith("local[") else "1"
    return (os.cpu_count() or 1) if inside == "*" else max(1, int(inside))


def _set_runtime(spark: "object", name: str, value: str) -> None:
    try:
        spark.conf.set(name, value)
    except Exception as exc:  # a static setting cannot change on a running session
        log.warning("%s=%s not applied to the running session: %s", name, value, exc)


@contextmanager
def arrow_batch(spark, rows: int) -> Iterator[None]:
    """Rows per Arrow block Spark hands pandas functions, for the actions run inside the block; the
    session's value comes back after. Jobs own this setting, library functions never touch it: their
    partition functions re-block what they are given (`udfs.batches.rebatch`). A job sets it where the
    transfer itself must stay small (image bytes: one block of a whole default 10,000 rows could hold
    gigabytes)."""
    name = "spark.sql.execution.arrow.maxRecordsPerBatch"
    before = spark.conf.get(name, None)
    spark.conf.set(name, str(rows))
    try:
        yield
    finally:
        if before is None:
            spark.conf.unset(name)
        else:
            spark.conf.set(name, before)
