"""The demo's steps: its data and gold labels written as files, each job's config, and one step's run."""
from __future__ import annotations

import json
import logging
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from jobs import assign_labels, build_index, dedup, embed_images, embed_texts, evaluate, report, search, unique
from jobs.core import config
from jobs.samples import datasets as demo_data
from jobs.tables import publish as tables
from jobs.core.config import ConfigError
from jobs.core.summary import JobFailed, RunSummary, append_run

log = logging.getLogger(__name__)
INPUT_KEYS = ("input", "embeddings", "index", "neighbours", "labels_table")


@dataclass(frozen=True)
class Step:
    stage: str          # the demo summary's stage name
    job: ModuleType     # a job module: NAME, Config, run
    keys: dict[str, Any]

    def line(self) -> str:
        """One plan line: job, its main input → its output."""
        source = next(self.keys[k] for k in INPUT_KEYS if k in self.keys)
        extra = ", ".join(f"{k} {v}" for k, v in self.keys.items() if k in ("precision", "mode", "method"))
        return f"{self.stage:<28} {source} → {self.keys['output']}" + (f" ({extra})" if extra else "")


def steps(cfg, precision: str) -> list[Step]:
    """Every job the demo runs, in order, with the keys it sets (the demo's shared keys fill the rest)."""
    base, data = Path(cfg.output), Path(cfg.output) / "data"

    def at(name: str) -> str:
        return str(base / name)

    images, texts = at("image_embeddings"), at("text_embeddings")
    index, neighbours, groups, ranks = at("image_index"), at("neighbours"), at("duplicate_groups"), at("uniqueness")
    labels, metrics = at("labels"), at("metrics")
    return [
        Step("embed-images", embed_images, {"input": str(data / "images"), "output": images,
                                            "precision": precision}),
        Step("build-index", build_index, {"embeddings": images, "output": index, "seed": cfg.seed}),
        Step("search", search, {"index": index, "queries": images, "k": cfg.k, "exclude_self": True,
                                "output": neighbours}),
        Step("dedup", dedup, {"embeddings": images, "index": index, "threshold": cfg.threshold,
                              "output": groups}),
        Step("unique", unique, {"embeddings": images, "index": index, "output": ranks}),
        Step("embed-texts", embed_texts, {"input": str(data / "fortunes.jsonl"), "output": texts,
                                          "precision": precision}),
        Step("assign-labels", assign_labels, {"embeddings": texts, "labels": cfg.label_set, "method": "zero-shot",
                                              "top_k": 2, "head_output": at("label_head"), "output": labels}),
        Step("evaluate (retrieval)", evaluate, {"neighbours": neighbours, "gold": str(data / "gold_images.json"),
                                                "output": metrics}),
        Step("evaluate (classification)", evaluate, {"labels_table": labels, "output": metrics, "mode": "append",
                                                     "gold": str(data / "gold_texts.json")}),
        Step("report", report, {"embeddings": images, "neighbours": neighbours, "unique": ranks, "dedup": groups,
                                "labels": labels, "metrics": metrics, "gold": str(data / "gold.json"),
                                "texts": str(data / "fortunes.jsonl"), "max_runs": 9, "title": "sparkamp demo",
                                "output": at("report")}),
    ]


def serve_command(cfg) -> str:
    """The `sparkamp serve` command for the demo's outputs: image search and explorer on the index, the
    label playground on the fortunes' table and the zero-shot head."""
    keys = {step.stage: step.keys for step in steps(cfg, "fp32")}  # output paths do not depend on precision
    flags = {"--index": keys["build-index"]["output"], "--embeddings": keys["embed-images"]["output"],
             "--neighbours": keys["search"]["output"], "--duplicates": keys["dedup"]["output"],
             "--uniqueness": keys["unique"]["output"], "--gold": keys["report"]["gold"],
             "--label-embeddings": keys["embed-texts"]["output"], "--label-set": cfg.label_set,
             "--labels-head": keys["assign-labels"]["head_output"]}
    return "sparkamp serve " + " \\\n    ".join(f"{flag} {shlex.quote(value)}" for flag, value in flags.items())


def write_data(cfg) -> dict[str, int]:
    """Fashion-MNIST PNGs, the sample photos, fortunes and their gold labels under `<output>/data`."""
    data = Path(cfg.output) / "data"
    shutil.rmtree(data, ignore_errors=True)  # a smaller re-run must not keep old files
    try:
        classes = demo_data.write_fashion_mnist(data / "images" / "fashion", cfg.images, cfg.seed)
        photos = demo_data.write_sample_photos(data / "images" / "photos")
        texts = demo_data.write_fortunes(data / "fortunes.jsonl", cfg.texts, cfg.seed)
    except FileNotFoundError as exc:  # a data package is missing: the message says which
        raise ConfigError(str(exc)) from None
    gold_images = {f"fashion/{path}": label for path, label in classes.items()}  # ids are paths under images/
    with (data / "fortunes.jsonl").open(encoding="utf-8") as fh:
        gold_texts = {row["id"]: row["category"] for row in map(json.loads, fh)}
    for name, gold in (("gold_images", gold_images), ("gold_texts", gold_texts),
                       ("gold", {**gold_images, **gold_texts})):
        (data / f"{name}.json").write_text(json.dumps(gold, indent=0))
    return {"images": len(classes), "photos": len(photos), "texts": texts}


def run_step(spark, shared: dict[str, Any], step: Step, demo: RunSummary) -> RunSummary:
    """Runs one job as its own run (own run id, summary logged and appended to the runs table)."""
    cfg = step.job.Config(**{**shared, **step.keys})
    summary = RunSummary(step.job.NAME, tables.new_run_id())
    try:
        cfg.validate()
        with demo.timed(step.stage):
            step.job.run(spark, cfg, summary)
    except (ConfigError, JobFailed) as exc:
        raise type(exc)(f"step {step.stage}: {exc}") from exc
    summary.log_summary()
    append_run(spark, cfg.runs_table, summary.row(config.as_dict(cfg)))
    return summary
