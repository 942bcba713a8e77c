"""The demo end to end at small sizes, --dry-run for every job, and the CLI's error hints."""
from __future__ import annotations

import json
import logging
import re
import shlex
import subprocess
import sys
import types
from dataclasses import dataclass

import pandas as pd
import pytest

from jobs import cli
from jobs.samples import demo_plan
from jobs.core.config import ConfigError, JobConfig
from jobs.core.summary import JobFailed
from tests.conftest import ROOT, common_args

STEPS = ["embed-images", "build-index", "search", "dedup", "unique", "embed-texts", "assign-labels", "evaluate",
         "evaluate", "report"]
SECTIONS = ["neighbours", "unique", "duplicates", "map", "predictions", "classification", "retrieval", "runs"]


@pytest.fixture(scope="module")
def demo_run(spark, tmp_path_factory):
    """`sparkamp demo` on 120 Fashion-MNIST images (+ the sample photos) and 100 fortunes."""
    root = tmp_path_factory.mktemp("demo")
    argv = ["demo", "--output", str(root / "demo"), "--set", "images=120", "--set", "texts=100",
            "--set", "threshold=0.9", *common_args(root)]
    assert cli.main(argv) == 0
    return root


def overall(metrics: pd.DataFrame, name: str) -> float:
    return metrics[(metrics.metric == name) & metrics["class"].isna()].value.item()


def test_demo_runs_every_step_and_writes_real_results(demo_run):
    base = demo_run / "demo"
    gold = json.loads((base / "data" / "gold.json").read_text())
    emb = pd.read_parquet(base / "image_embeddings")
    photos = len(emb) - 120
    assert photos >= 5 and (emb.status == "ok").all() and emb.embedding.map(len).eq(1280).all()
    assert emb.model.iloc[0].startswith("efficientnet-lite0")
    assert json.loads((base / "image_index" / "manifest.json").read_text())["ntotal"] == len(emb)

    nb = pd.read_parquet(base / "neighbours")
    assert len(nb) == len(emb) * 10 and set(nb.query_id) == set(emb.id)
    assert not (nb.query_id == nb.neighbor_id).any()  # exclude_self
    uniq = pd.read_parquet(base / "uniqueness")
    assert sorted(uniq["rank"]) == list(range(1, len(emb) + 1))
    assert uniq.sort_values("rank").id.head(5).str.startswith("photos/").all()  # colour photos among clothes
    groups = pd.read_parquet(base / "duplicate_groups")
    assert len(groups) >= 2 and set(groups.id) <= set(emb.id)

    texts = pd.read_parquet(base / "text_embeddings")
    assert len(texts) == 100 and (texts.status == "ok").all()
    labels = pd.read_parquet(base / "labels")
    assert len(labels) == 200 and set(labels.label) <= set(gold.values())  # top 2 per fortune
    first = labels[labels["rank"] == 1]
    accuracy = (first.label == first.id.map(gold)).mean()

    metrics = pd.read_parquet(base / "metrics")
    assert overall(metrics, "accuracy") == pytest.approx(accuracy)
    assert accuracy > 0.6  # 5 categories: chance 0.2; measured 0.82
    hits = nb.assign(q=nb.query_id.map(gold), n=nb.neighbor_id.map(gold)).dropna(subset=["q"])
    assert overall(metrics, "precision@10") == pytest.approx((hits.q == hits.n).mean())
    assert overall(metrics, "precision@10") > 0.4  # 10 classes: chance 0.1; measured 0.53

    page = (base / "report" / "index.html").read_text()
    assert re.findall(r'<section id="([^"]+)"', page) == SECTIONS
    assert page.count("<img ") > 100 and "http://" not in page and "https://" not in page

    runs = pd.read_parquet(demo_run / "runs").sort_values("started_at")
    assert list(runs.job) == ["demo", *STEPS]  # the demo's row first (its start), then one per step
    assert runs.run_id.nunique() == len(runs)  # each step is a run of its own
    row = runs[runs.job == "demo"].iloc[0]
    stats, outputs = json.loads(row.stats), json.loads(row.outputs)
    assert stats["accuracy"] == pytest.approx(accuracy) and stats["images_written"] == 120
    assert stats["texts_written"] == 100 and stats["precision@10"] > 0.4
    assert outputs[-1] == str(base / "report" / "index.html")
    assert json.loads(row.stages).keys() >= {"write data", "embed-images", "evaluate (classification)", "report"}


def test_dry_run_works_for_every_job(demo_run, capsys):
    base, out = demo_run / "demo", demo_run / "dry-run-output"
    given = {"embed-images": ["--input", "data/images"], "embed-texts": ["--input", "data/fortunes.jsonl"],
             "build-index": ["--embeddings", "image_embeddings"],
             "search": ["--index", "image_index", "--queries", "image_embeddings"],
             "dedup": ["--embeddings", "image_embeddings"], "unique": ["--embeddings", "image_embeddings"],
             "assign-labels": ["--embeddings", "text_embeddings", "--labels", str(ROOT / "conf/labels_fortunes.yaml")],
             "evaluate": ["--neighbours", "neighbours", "--gold", "data/gold_images.json"],
             "report": ["--embeddings", "image_embeddings"], "demo": [], "serve": ["--index", "image_index"]}
    assert set(given) == set(cli.JOBS)
    for job, args in given.items():
        args = [a if a.startswith("-") or a.startswith("/") else str(base / a) for a in args]
        assert cli.main([job, *args, "--output", str(out), "--dry-run"]) == 0, job
        shown = capsys.readouterr().out
        assert '"output"' in shown and "\nplan: " in shown and "nothing was run" in shown, job
    assert not out.exists()


def test_demo_ends_with_a_serve_command_whose_inputs_it_wrote(demo_run, capsys):
    from jobs import demo
    from jobs.core import config

    printed = demo.next_step(config.load(demo.Config, sets=[f"output={demo_run / 'demo'}"]))
    argv = shlex.split(printed.split("\n", 1)[1].replace("\\\n", " "))
    assert argv[:2] == ["sparkamp", "serve"] and len(argv) == 20  # every output the app reads, flag and path
    assert cli.main([*argv[1:], "--dry-run"]) == 0  # each exists and validates (serve --dry-run loads nothing)
    assert '"labels_head": "' + str(demo_run / "demo" / "label_head") in capsys.readouterr().out


def test_demo_rerun_with_fewer_items_keeps_nothing_old(spark, demo_run):
    out = demo_run / "demo"
    argv = ["demo", "--output", str(out), "--set", "images=20", "--set", "texts=10", *common_args(demo_run)]
    assert cli.main(argv) == 0
    assert len(pd.read_parquet(out / "text_embeddings")) == 10
    assert len(list((out / "data" / "images" / "fashion").rglob("*.png"))) == 20


def test_demo_dry_run_prints_the_plan_and_runs_nothing(tmp_path):
    result = subprocess.run([sys.executable, "-m", "jobs.cli", "demo", "--dry-run", "--output",
                             str(tmp_path / "demo"), *common_args(tmp_path)],
                            capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    config_text, _, plan = result.stdout.partition("plan:")
    assert json.loads(config_text)["images"] == 2000
    numbered = re.findall(r"^\s+(\d+)\. (\S+)", plan, re.M)
    assert [name for _, name in numbered] == ["write", *STEPS]
    assert "precision bf16" in plan or "precision fp32" in plan  # `auto` resolved for this CPU
    assert "nothing was run" in result.stdout and "Spark" not in result.stderr
    assert list(tmp_path.iterdir()) == []  # no data, tables, runs or warehouse


@dataclass(frozen=True)
class FailingConfig(JobConfig):
    output: str = "unused"


@pytest.mark.parametrize("error, code, hint", [
    (ConfigError("key 'x': bad"), 2, "`sparkamp failing --help` lists the accepted keys"),
    (JobFailed("rows lost"), 1, "its output was not published (any previous one is unchanged)"),
])
def test_errors_at_run_time_end_with_what_to_do(spark, tmp_path, error, code, hint):
    def run(spark, cfg, summary):
        raise error

    job = types.SimpleNamespace(NAME="failing", Config=FailingConfig, run=run)
    records: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())
    logging.getLogger("sparkamp").addHandler(handler)
    try:
        assert cli.execute(job, FailingConfig(runs_table="")) == code
    finally:
        logging.getLogger("sparkamp").removeHandler(handler)
    assert str(error) in records[-1] and hint in records[-1]


def test_demo_steps_are_real_job_configs(tmp_path):
    """Every step's keys exist in its job's Config (a renamed key fails here, not after minutes)."""
    from jobs import demo
    from jobs.core import config

    cfg = config.load(demo.Config, None, [f"output={tmp_path}"])
    for step in demo_plan.steps(cfg.plan_options, "fp32"):
        job = demo.JOBS[step.job]
        job.Config(**step.keys)  # unknown keys raise TypeError
        assert set(step.keys) <= set(config.fields(job.Config)), step.stage
