"""Shared fixtures: one real local Spark session, real packaged data written as files."""
from __future__ import annotations

import io
import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def spark(tmp_path_factory):
    """A real local[2] session with Hive support (Derby metastore) in its own warehouse."""
    from pyspark.sql import SparkSession

    warehouse = tmp_path_factory.mktemp("warehouse")
    session = (SparkSession.builder.master("local[2]").appName("sparkamp-tests")
               .config("spark.sql.warehouse.dir", str(warehouse / "spark-warehouse"))
               .config("spark.hadoop.javax.jdo.option.ConnectionURL",
                       f"jdbc:derby:;databaseName={warehouse / 'metastore_db'};create=true")
               .config("spark.driver.extraJavaOptions", f"-Dderby.system.home={warehouse}")
               .config("spark.ui.enabled", "false")
               .config("spark.sql.shuffle.partitions", "4")
               .config("spark.python.worker.reuse", "true")
               .enableHiveSupport().getOrCreate())
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture(scope="session")
def fashion(tmp_path_factory):
    """200 Fashion-MNIST test images as PNGs in class folders: (folder, {relative path: class})."""
    from jobs.samples import datasets

    folder = tmp_path_factory.mktemp("fashion")
    return folder, datasets.write_fashion_mnist(folder, 200, seed=1)


def jpeg_bytes(size=(64, 48), color=(200, 30, 30), **save) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "JPEG", **save)
    return buf.getvalue()


def common_args(tmp_path: Path) -> list[str]:
    """Keys every CLI call in the tests sets: its own warehouse and runs table."""
    return ["--set", f"warehouse={tmp_path / 'wh'}", "--set", f"runs_table={tmp_path / 'runs'}"]
