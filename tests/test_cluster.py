"""On a real standalone cluster (1 master, 2 workers): the pipeline equals local[*]; a worker lost
mid-job loses and duplicates nothing."""
from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from jobs import cli
from jobs.samples import datasets
from tests.cluster import ROOT, StandaloneCluster, free_port, submit
from tests.conftest import common_args
from tests.test_sharded_search import assert_same_neighbours, write_corpus


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    subprocess.run(["make", "-s", "dist"], cwd=ROOT, check=True, capture_output=True, timeout=300)
    cluster = StandaloneCluster(tmp_path_factory.mktemp("cluster"))
    try:
        yield cluster.start()
    finally:
        cluster.stop()


def by_id(path) -> pd.DataFrame:
    return pd.read_parquet(path).set_index("id").sort_index()


def test_pipeline_on_the_cluster_equals_local(spark, cluster, fashion, tmp_path):
    folder, classes = fashion
    results = {}
    for where in ("cluster", "local"):
        out = tmp_path / where
        steps = [("embed_images", "embed-images", "--input", str(folder), "--output", str(out / "emb")),
                 ("build_index", "build-index", "--embeddings", str(out / "emb"), "--output", str(out / "index")),
                 ("search", "search", "--index", str(out / "index"), "--queries", str(out / "emb"),
                  "--output", str(out / "nb"), "--k", "5")]
        for module, name, *args in steps:
            if where == "cluster":
                assert submit(cluster, module, *args, *common_args(out)) == 0, module
            else:
                assert cli.main([name, *args, *common_args(out)]) == 0, name
        results[where] = out
    apps = cluster.state().get("completedapps", [])
    assert len(apps) >= 3 and all(app["state"] == "FINISHED" for app in apps)
    assert all(list((cluster.folder / f"work-{i}").glob("app-*")) for i in (0, 1))  # both workers ran

    remote, local = by_id(results["cluster"] / "emb"), by_id(results["local"] / "emb")
    assert list(remote.index) == list(local.index) == sorted(classes)
    assert (remote.status == "ok").all() and (remote.content_hash == local.content_hash).all()
    assert np.allclose(np.stack(remote.embedding), np.stack(local.embedding), atol=1e-4)
    nb = {w: pd.read_parquet(results[w] / "nb").sort_values(["query_id", "rank"]).reset_index(drop=True)
          for w in results}
    assert nb["cluster"][["query_id", "rank"]].equals(nb["local"][["query_id", "rank"]])
    same = (nb["cluster"].neighbor_id.to_numpy() == nb["local"].neighbor_id.to_numpy()).mean()
    assert same > 0.99  # float noise may swap near-ties
    assert np.allclose(nb["cluster"].score, nb["local"].score, atol=1e-4)


def shard_logs(cluster: StandaloneCluster) -> dict[Path, tuple[set, list]]:
    """Per executor stderr log that searched shards: (shard files it opened, (block, shard) pairs it searched)."""
    found = {}
    for log in cluster.folder.glob("work-*/app-*/*/stderr"):
        text = log.read_text(errors="replace")
        searched = re.findall(r"searched block (\d+) shard (\S+) \(", text)
        if searched:
            found[log] = (set(re.findall(r"opened shard (\S+)", text)), searched)
    return found


def test_a_sharded_index_searched_on_the_cluster_equals_the_merged_index(spark, cluster, tmp_path):
    """4 shards x 2 query blocks = 8 tasks over 2 executors: each executor opens only the shards of its tasks."""
    write_corpus(tmp_path / "emb.parquet")
    nb = {}
    for name, merge in (("merged", "merge=memory"), ("sharded", "merge=none")):
        index = str(tmp_path / name)
        assert cli.main(["build-index", "--embeddings", str(tmp_path / "emb.parquet"), "--output", index, "--factory",
                         "Flat", "--set", merge, "--set", "num_shards=4", *common_args(tmp_path)]) == 0
        args = ["--index", index, "--queries", str(tmp_path / "emb.parquet"), "--output", str(tmp_path / f"nb-{name}"),
                "--k", "5", "--set", "query_blocks=2", *common_args(tmp_path)]
        assert (submit(cluster, "search", *args) if name == "sharded" else cli.main(["search", *args])) == 0, name
        nb[name] = pd.read_parquet(tmp_path / f"nb-{name}").sort_values(["query_id", "rank"]).reset_index(drop=True)
    assert_same_neighbours(nb["sharded"], nb["merged"])

    logs = shard_logs(cluster)
    names = {f"shards/shard-{i:05d}.faiss" for i in range(4)}
    searched = [pair for _, pairs in logs.values() for pair in pairs]
    assert sorted(searched) == sorted((str(b), s) for b in range(2) for s in names)  # each task once
    for log, (opened, pairs) in logs.items():
        assert opened and opened <= {shard for _, shard in pairs}, log  # opened only what its tasks searched


def active_stage(ui_port: int) -> dict | None:
    """The driver's active stage with tasks both finished and running, or None."""
    try:
        base = f"http://127.0.0.1:{ui_port}/api/v1/applications"
        with urllib.request.urlopen(base, timeout=2) as r:
            app = json.load(r)[0]["id"]
        with urllib.request.urlopen(f"{base}/{app}/stages?status=active", timeout=2) as r:
            stages = json.load(r)
    except (OSError, IndexError, ValueError):
        return None
    return next((s for s in stages if s["numCompleteTasks"] >= 1 and s["numActiveTasks"] >= 1
                 and s["numTasks"] >= 8), None)


def test_a_worker_killed_mid_job_loses_and_duplicates_nothing(cluster, tmp_path):
    """Runs last in this module: it leaves the cluster with one worker."""
    images = tmp_path / "images"
    classes = datasets.write_fashion_mnist(images, 1200, seed=3)
    ui = free_port()
    proc, log = submit(cluster, "embed_images", "--input", str(images), "--output", str(tmp_path / "emb"),
                       "--set", "num_partitions=12", *common_args(tmp_path), background=True,
                       conf={"spark.ui.enabled": "true", "spark.ui.port": str(ui)})
    deadline, stage = time.time() + 300, None
    while time.time() < deadline and proc.poll() is None and stage is None:
        stage = active_stage(ui)
        time.sleep(0.5)
    assert stage is not None, f"the embed stage was never seen running: {log.read_text()[-3000:]}"
    cluster.kill_worker(0)
    assert proc.wait(timeout=600) == 0, log.read_text()[-3000:]
    text = log.read_text()
    assert "Lost executor" in text or "Removed executor" in text or "Executor lost" in text, text[-3000:]
    out = pd.read_parquet(tmp_path / "emb")
    assert sorted(out.id) == sorted(classes) and out.id.is_unique
    assert (out.status == "ok").all()
    assert len(cluster.alive_workers()) == 1
