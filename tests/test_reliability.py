"""Killed drivers and incremental re-runs: the previous output survives, and incremental equals full."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from jobs import cli
from jobs.samples import datasets
from tests.cluster import ROOT, spark_env
from tests.conftest import common_args


def last_stats(tmp_path: Path) -> dict:
    runs = [pq.read_table(f).to_pylist()[0] for f in sorted((tmp_path / "runs").glob("run-*.parquet"))]
    latest = max(runs, key=lambda r: r["started_at"])
    return {**json.loads(latest["stats"]), "rows_in": latest["rows_in"], "rows_out": latest["rows_out"]}


def assert_same_rows(a: Path, b: Path) -> None:
    """Row for row: the same ids, hashes, statuses and models; embeddings equal up to float noise."""
    left, right = (pd.read_parquet(p).set_index("id").sort_index() for p in (a, b))
    assert list(left.index) == list(right.index) and left.index.is_unique
    for column in ("content_hash", "status", "model", "source"):
        assert left[column].equals(right[column]), column
    ok = left.status == "ok"
    assert np.allclose(np.stack(left.embedding[ok]), np.stack(right.embedding[ok]), atol=1e-5)


def fortunes_frame(n: int, seed: int) -> pd.DataFrame:
    rows = pd.DataFrame(datasets.fortunes())
    return rows.iloc[np.random.default_rng(seed).permutation(len(rows))[:n]][["id", "text"]]


def test_incremental_texts_recompute_only_what_changed(spark, tmp_path):
    corpus = fortunes_frame(330, seed=11)
    before, extra = corpus.iloc[:300].copy(), corpus.iloc[300:]
    before.to_parquet(tmp_path / "v1.parquet")
    out = tmp_path / "emb"
    args = ["--output", str(out), "--set", "incremental=true", *common_args(tmp_path)]
    assert cli.main(["embed-texts", "--input", str(tmp_path / "v1.parquet"), *args]) == 0
    assert last_stats(tmp_path)["embedded"] == 300

    after = before.iloc[30:].copy()                                  # 30 deleted
    after.iloc[:30, after.columns.get_loc("text")] = [t + " (revised)" for t in after.text.iloc[:30]]  # changed
    after = pd.concat([after, extra])                                # 30 added
    after.to_parquet(tmp_path / "v2.parquet")
    assert cli.main(["embed-texts", "--input", str(tmp_path / "v2.parquet"), *args]) == 0
    stats = last_stats(tmp_path)
    assert (stats["incremental_new"], stats["incremental_changed"], stats["incremental_deleted"],
            stats["incremental_unchanged"], stats["embedded"]) == (30, 30, 30, 240, 60)
    assert stats["rows_in"] == stats["rows_out"] == 300

    full = tmp_path / "full"
    assert cli.main(["embed-texts", "--input", str(tmp_path / "v2.parquet"), "--output", str(full),
                     *common_args(tmp_path)]) == 0
    assert_same_rows(out, full)
    assert cli.main(["embed-texts", "--input", str(tmp_path / "v2.parquet"), *args]) == 0
    assert last_stats(tmp_path)["embedded"] == 0  # nothing changed: nothing embedded
    assert_same_rows(out, full)


def test_incremental_images_recompute_only_what_changed(spark, tmp_path):
    folder = tmp_path / "images"
    classes = datasets.write_fashion_mnist(folder, 60, seed=4)
    spare = datasets.write_fashion_mnist(tmp_path / "spare", 12, seed=9)
    out = tmp_path / "emb"
    args = ["--input", str(folder), "--output", str(out), "--set", "incremental=true", *common_args(tmp_path)]
    assert cli.main(["embed-images", *args]) == 0
    ids = sorted(classes)
    for name in ids[:6]:                                    # 6 deleted
        (folder / name).unlink()
    spares = sorted(spare)
    for name, source in zip(ids[6:12], spares[:6]):         # 6 changed: same path, other pixels
        shutil.copyfile(tmp_path / "spare" / source, folder / name)
    for source in spares[6:]:                               # 6 added
        target = folder / "added" / Path(source).name
        target.parent.mkdir(exist_ok=True)
        shutil.copyfile(tmp_path / "spare" / source, target)
    assert cli.main(["embed-images", *args]) == 0
    stats = last_stats(tmp_path)
    assert (stats["incremental_new"], stats["incremental_changed"], stats["incremental_deleted"],
            stats["embedded"]) == (6, 6, 6, 12)
    full = tmp_path / "full"
    assert cli.main(["embed-images", "--input", str(folder), "--output", str(full), *common_args(tmp_path)]) == 0
    assert_same_rows(out, full)


def test_incremental_needs_overwrite(tmp_path, capsys):
    code = cli.main(["embed-texts", "--input", str(ROOT / "conf"), "--output", str(tmp_path / "o"),
                     "--set", "incremental=true", "--set", "mode=append"])
    assert code == 2 and "key 'incremental'" in capsys.readouterr().err


RUN_TOKEN = "SPARKAMP_TEST_RUN"  # in the environment of a background run and of every process it starts


def run_in_background(args: list[str], log: Path) -> subprocess.Popen:
    """`sparkamp <args>` as a child process in a session of its own, output to `log`."""
    env = {**spark_env(), RUN_TOKEN: str(log)}
    return subprocess.Popen([sys.executable, "-m", "jobs.cli", *args], cwd=ROOT, env=env,
                            stdout=open(log, "wb"), stderr=subprocess.STDOUT, start_new_session=True)


def kill_run(proc: subprocess.Popen, log: Path, timeout: float = 60.0) -> None:
    """SIGKILL of every process of the run `run_in_background(..., log)` started, as when its machine dies:
    its process group (Python driver, JVM) and pyspark's daemon and workers, which pyspark.daemon moves to a
    process group of their own (found by the token their environment inherited). Returns once all are gone."""
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=timeout)
    token = f"{RUN_TOKEN}={log}".encode()
    deadline = time.time() + timeout
    while (left := _pids_with(token)) and time.time() < deadline:
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)
    assert not left, f"processes of the killed run still alive: {left}"


def _pids_with(token: bytes) -> list[int]:
    pids = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        with contextlib.suppress(OSError):
            if token in environ.read_bytes().split(b"\0"):
                pids.append(int(environ.parent.name))
    return pids


def test_a_driver_killed_mid_write_leaves_the_previous_output(tmp_path):
    """SIGKILL of the driver's whole process group (Python, JVM, workers) while it writes."""
    fortunes_frame(100, seed=1).to_parquet(tmp_path / "v1.parquet")
    bigger = fortunes_frame(400, seed=2)
    bigger.to_parquet(tmp_path / "v2.parquet")
    out = tmp_path / "emb"
    first = run_in_background(["embed-texts", "--input", str(tmp_path / "v1.parquet"), "--output", str(out),
                               *common_args(tmp_path)], tmp_path / "first.log")
    assert first.wait(timeout=300) == 0, (tmp_path / "first.log").read_text()[-2000:]
    previous = pd.read_parquet(out)

    staging = out.parent / "_sparkamp_staging"
    second = run_in_background(["embed-texts", "--input", str(tmp_path / "v2.parquet"), "--output", str(out),
                                *common_args(tmp_path)], tmp_path / "second.log")
    deadline = time.time() + 300
    while time.time() < deadline and second.poll() is None and not list(staging.glob("emb-staging-*/_temporary")):
        time.sleep(0.2)
    assert second.poll() is None, "the second run ended before it was killed"
    time.sleep(1.0)  # let some tasks write their part files
    kill_run(second, tmp_path / "second.log")
    assert list(staging.glob("emb-staging-*")), "killed before anything was staged"

    survived = pd.read_parquet(out)  # what a reader sees: the previous output, whole
    assert sorted(survived.id) == sorted(previous.id) and len(survived) == 100
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith((".", "_"))) == \
        sorted(p.name for p in out.iterdir() if p.name.startswith("part-"))

    third = run_in_background(["embed-texts", "--input", str(tmp_path / "v2.parquet"), "--output", str(out),
                               *common_args(tmp_path)], tmp_path / "third.log")
    assert third.wait(timeout=600) == 0, (tmp_path / "third.log").read_text()[-2000:]
    assert sorted(pd.read_parquet(out).id) == sorted(bigger.id)
    assert not staging.exists()  # the killed run's staging was cleared by the next run


@pytest.mark.parametrize("job", ["embed-images", "embed-texts"])
def test_unknown_job_keys_never_start_spark(job, tmp_path, capsys):
    code = cli.main([job, "--input", str(tmp_path), "--set", "incremantal=true"])
    assert code == 2 and "did you mean 'incremental'" in capsys.readouterr().err


def vectors_table(path: Path, ids: list[str], vectors: np.ndarray, hashes: list[str]) -> None:
    pd.DataFrame({"id": ids, "source": "synthetic", "content_hash": hashes, "model": "synthetic-16",
                  "embedding": list((vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)),
                  "status": "ok", "error": None}).to_parquet(path)


@pytest.mark.parametrize("factory", ["auto", "IVF16,Flat"])
def test_incremental_index_update_equals_a_fresh_build(spark, tmp_path, factory):
    rng = np.random.default_rng(5)
    ids = [f"v{i:04d}" for i in range(600)]
    vectors = rng.normal(size=(600, 16))
    vectors_table(tmp_path / "v1.parquet", ids, vectors, [f"h{i}" for i in range(600)])
    changed = vectors.copy()
    changed[60:120] = rng.normal(size=(60, 16))                               # 60 changed
    new_ids = ids[60:] + [f"w{i:04d}" for i in range(60)]                      # 60 deleted, 60 added
    new_vectors = np.vstack([changed[60:], rng.normal(size=(60, 16))])
    hashes = [f"h{i}" if i >= 120 else f"h{i}-new" for i in range(60, 600)] + [f"n{i}" for i in range(60)]
    vectors_table(tmp_path / "v2.parquet", new_ids, new_vectors, hashes)
    index, settings = tmp_path / "index", ["--factory", factory, "--set", "nprobe=16", *common_args(tmp_path)]
    assert cli.main(["build-index", "--embeddings", str(tmp_path / "v1.parquet"), "--output", str(index),
                     "--set", "incremental=true", *settings]) == 0
    assert cli.main(["build-index", "--embeddings", str(tmp_path / "v2.parquet"), "--output", str(index),
                     "--set", "incremental=true", *settings]) == 0
    stats = last_stats(tmp_path)
    assert (stats["incremental_new"], stats["incremental_changed"], stats["incremental_deleted"],
            stats["incremental_unchanged"]) == (60, 60, 60, 480)
    fresh = tmp_path / "fresh"
    assert cli.main(["build-index", "--embeddings", str(tmp_path / "v2.parquet"), "--output", str(fresh),
                     *settings]) == 0
    results = {}
    for name, folder in (("updated", index), ("fresh", fresh)):
        out = tmp_path / f"nb-{name}"
        assert cli.main(["search", "--index", str(folder), "--queries", str(tmp_path / "v2.parquet"),
                         "--output", str(out), "--k", "10", *common_args(tmp_path)]) == 0
        results[name] = pd.read_parquet(out).sort_values(["query_id", "rank"]).reset_index(drop=True)
    assert results["updated"][["query_id", "rank", "neighbor_id"]].equals(
        results["fresh"][["query_id", "rank", "neighbor_id"]])
    assert np.allclose(results["updated"].score, results["fresh"].score, atol=1e-5)


def test_a_swap_killed_between_its_renames_is_undone_by_the_next_run(spark, tmp_path):
    from jobs.tables import publish

    out = tmp_path / "out"
    spark.range(10).write.parquet(str(out))
    staging = tmp_path / "_sparkamp_staging"
    staging.mkdir()
    out.rename(staging / "out-old-run1")          # the kill came after the first rename
    (staging / "out-staging-run1").mkdir()        # and left the new data staged
    publish.prepare_output(spark, str(out), "overwrite")
    assert spark.read.parquet(str(out)).count() == 10
    assert not (staging / "out-staging-run1").exists()
