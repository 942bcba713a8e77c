"""Run the whole pipeline on packaged data: embed, index, search, dedup, unique, label, evaluate, report."""
from __future__ import annotations

import dataclasses
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

if __package__ in (None, ""):  # `spark-submit jobs/demo.py` without the zip: the checkout on the path
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from jobs import (assign_labels, build_index, cli, dedup, embed_images, embed_texts, evaluate,  # noqa: E402
                  report, search, unique)
from jobs.core import config  # noqa: E402
from jobs.core.config import TABLE_PREFIX, ConfigError, JobConfig, key, require_positive  # noqa: E402
from jobs.core.paths import is_remote  # noqa: E402
from jobs.core.summary import JobFailed, RunSummary, append_run, new_run_id  # noqa: E402
from jobs.samples import demo_plan  # noqa: E402

NAME = "demo"
PLAN = ("write Fashion-MNIST PNGs, sample photos, fortunes and gold labels → embed-images → build-index → "
        "search → dedup → unique → embed-texts → assign-labels (zero-shot) → evaluate (retrieval, "
        "classification) → report")
CHECKOUT = Path(__file__).resolve().parent.parent
JOBS = {job.NAME: job for job in (embed_images, build_index, search, dedup, unique, embed_texts, assign_labels,
                                  evaluate, report)}
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Config(JobConfig):
    output: str = key("warehouse/demo", "local folder for the demo's data, tables and report", flag="--output")
    images: int = key(2000, "Fashion-MNIST images to embed (plus the sample photos)")
    texts: int = key(1500, "fortunes to embed and label (the five categories hold about 1,480)")
    seed: int = key(0, "seed for the data samples and the index")
    precision: Literal["auto", "fp32", "bf16"] = key(
        "auto", "embedding precision; auto = bf16 where the CPU has native bf16 instructions, else fp32")
    k: int = key(10, "neighbours per image (search), and the k of precision@k")
    threshold: float = key(0.95, "dedup: cosine at or above which two images are duplicates")
    labels: str = key("conf/labels_fortunes.yaml", "label set for zero-shot labelling; a relative path "
                      "missing here is read from the sparkamp checkout")

    def validate(self) -> None:
        super().validate()
        if self.output.startswith(TABLE_PREFIX) or is_remote(self.output):
            raise ConfigError(f"key 'output': the demo writes local files; give a local folder, not {self.output!r}")
        if self.mode == "append":
            raise ConfigError("key 'mode': the demo rewrites its data; use overwrite or error-if-exists")
        require_positive(self, "images", "texts", "k")
        if not os.path.isfile(self.label_set):
            raise ConfigError(f"key 'labels': {self.labels!r} is not a file (nor under {CHECKOUT})")

    @property
    def label_set(self) -> str:
        if os.path.isabs(self.labels) or os.path.exists(self.labels):
            return self.labels
        return str(CHECKOUT / self.labels)

    @property
    def plan_options(self) -> demo_plan.DemoOptions:
        return demo_plan.DemoOptions(self.output, self.images, self.texts, self.seed, self.k, self.threshold,
                                     self.label_set)

    def resolved_precision(self) -> str:
        from udfs.precision import native_bf16

        return self.precision if self.precision != "auto" else "bf16" if native_bf16() else "fp32"


def plan(cfg: Config) -> str:
    """The steps `run` takes, one line each (for --dry-run)."""
    lines = [f"{'write data':<28} {cfg.images} Fashion-MNIST PNGs, the sample photos, up to {cfg.texts} "
             f"fortunes, gold labels → {Path(cfg.output) / 'data'}"]
    lines += [step.line() for step in demo_plan.steps(cfg.plan_options, cfg.resolved_precision())]
    return "\n".join(f"  {i:>2}. {line}" for i, line in enumerate(lines))


def run(spark, cfg: Config, summary: RunSummary) -> None:
    if cfg.mode == "error-if-exists" and Path(cfg.output).exists():
        raise ConfigError(f"key 'output': {cfg.output} exists and mode is error-if-exists; use mode overwrite")
    precision = cfg.resolved_precision()
    log.info("demo: embeddings in %s (%s)", precision, "set by `precision`" if cfg.precision != "auto" else
             "this CPU has native bf16" if precision == "bf16" else "this CPU has no native bf16")
    with summary.timed("write data"):
        written = demo_plan.write_data(cfg.plan_options)
    shared = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(JobConfig)}
    done = {}
    for step in demo_plan.steps(cfg.plan_options, precision):
        done[step.stage] = run_step(spark, shared, step, summary)
    embedded = [done["embed-images"], done["embed-texts"]]
    summary.rows_in = sum(s.rows_in for s in embedded)
    for step in embedded:
        for status, count in step.statuses.items():
            summary.statuses[status] = summary.statuses.get(status, 0) + count
    summary.stats.update(results(cfg, written, done))
    summary.outputs += [out for step in done.values() for out in step.outputs]
    log_results(cfg, precision, summary.stats, done["report"].outputs[-1])


def next_step(cfg: Config) -> str:
    """Printed by the CLI after the demo's summary: the app on what the demo built."""
    return ("next: the app on what the demo built (then open http://127.0.0.1:8000/)\n"
            + demo_plan.serve_command(cfg.plan_options))


def results(cfg: Config, written: dict[str, int], done: dict[str, RunSummary]) -> dict[str, float]:
    """The demo's headline numbers, kept in its summary row."""
    retrieval, labels = done["evaluate (retrieval)"].stats, done["evaluate (classification)"].stats
    return {**{f"{name}_written": float(n) for name, n in written.items()},
            "neighbour_rows": done["search"].stats.get("neighbour_rows", 0),
            "index_recall_at_10": done["build-index"].stats.get("recall_at_10", 0.0),
            "duplicated_items": done["dedup"].stats.get("duplicated_items", 0),
            f"precision@{cfg.k}": retrieval.get(f"precision@{cfg.k}", 0.0),
            "accuracy": labels.get("accuracy", 0.0), "top_2_accuracy": labels.get("top_2_accuracy", 0.0),
            "macro_f1": labels.get("macro_f1", 0.0)}


def log_results(cfg: Config, precision: str, stats: dict[str, float], page: str) -> None:
    log.info("demo results")
    log.info("  images     %d Fashion-MNIST + %d photos embedded (%s); %d neighbour rows; index recall@10 "
             "%.3f; %d items in duplicate groups", stats["images_written"], stats["photos_written"], precision,
             stats["neighbour_rows"], stats["index_recall_at_10"], stats["duplicated_items"])
    log.info("  retrieval  precision@%d %.3f (same Fashion-MNIST class; chance 0.10)", cfg.k,
             stats[f"precision@{cfg.k}"])
    log.info("  texts      %d fortunes labelled zero-shot: accuracy %.3f, top-2 %.3f, macro-F1 %.3f "
             "(5 categories; chance 0.20)", stats["texts_written"], stats["accuracy"], stats["top_2_accuracy"],
             stats["macro_f1"])
    log.info("  report     %s", page)


def run_step(spark, shared: dict[str, Any], step: demo_plan.Step, demo: RunSummary) -> RunSummary:
    """Runs one job as its own run (own run id, summary logged and appended to the runs table)."""
    job = JOBS[step.job]
    cfg = job.Config(**{**shared, **step.keys})
    summary = RunSummary(job.NAME, new_run_id())
    try:
        cfg.validate()
        with demo.timed(step.stage):
            job.run(spark, cfg, summary)
    except (ConfigError, JobFailed) as exc:
        raise type(exc)(f"step {step.stage}: {exc}") from exc
    summary.log_summary()
    append_run(spark, cfg.runs_table, summary.row(config.as_dict(cfg)))
    return summary


if __name__ == "__main__":
    sys.exit(cli.main([NAME, *sys.argv[1:]]))
