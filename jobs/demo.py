"""Run the pipeline on packaged data: write demo images and texts, then embed both."""
from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # `spark-submit jobs/demo.py` without the zip on the path
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from jobs import demo_data, embed_images, embed_texts  # noqa: E402
from jobs.config import JobConfig, key, require_positive  # noqa: E402
from jobs.summary import RunSummary  # noqa: E402

NAME = "demo"
PLAN = "write Fashion-MNIST PNGs, sample photos and fortunes → embed-images → embed-texts"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Config(JobConfig):
    output: str = key("warehouse/demo", "folder for the demo's data and tables", flag="--output")
    images: int = key(2000, "Fashion-MNIST images to embed (plus the sample photos)")
    texts: int = key(1000, "fortunes to embed")
    seed: int = key(0, "seed for the data samples")

    def validate(self) -> None:
        super().validate()
        require_positive(self, "images", "texts")



def run(spark, cfg: Config, summary: RunSummary) -> None:
    base = Path(cfg.output)
    with summary.timed("write demo data"):
        shutil.rmtree(base / "data", ignore_errors=True)  # a smaller re-run must not keep old files
        demo_data.write_fashion_mnist(base / "data" / "images" / "fashion", cfg.images, cfg.seed)
        demo_data.write_sample_photos(base / "data" / "images" / "photos")
        demo_data.write_fortunes(base / "data" / "fortunes.jsonl", cfg.texts, cfg.seed)
    shared = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(JobConfig)}
    steps = [
        (embed_images, {"input": str(base / "data" / "images"), "output": str(base / "image_embeddings")}),
        (embed_texts, {"input": str(base / "data" / "fortunes.jsonl"),
                       "output": str(base / "text_embeddings")}),
    ]
    for job, keys in steps:
        job_cfg = job.Config(**{**shared, **keys})
        job_cfg.validate()
        step = RunSummary(job.NAME, summary.run_id)
        with summary.timed(job.NAME):
            job.run(spark, job_cfg, step)
        step.log_summary()
        summary.rows_in += step.rows_in
        for status, count in step.statuses.items():
            summary.statuses[status] = summary.statuses.get(status, 0) + count
        summary.outputs.extend(step.outputs)


if __name__ == "__main__":
    from jobs import cli, demo

    sys.exit(cli.run_job(demo, sys.argv[1:]))
