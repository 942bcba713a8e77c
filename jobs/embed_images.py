"""Embed image files (a directory, a glob, or a table of bytes/paths) with a CNN into an embeddings table."""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import ClassVar

if __package__ in (None, ""):  # `spark-submit jobs/embed_images.py` without the zip on the path
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from jobs.embedding import steps as embedding  # noqa: E402
from jobs.tables import publish as tables  # noqa: E402
from jobs.core.config import ConfigError, key  # noqa: E402
from jobs.embedding.steps import EmbedConfig  # noqa: E402
from jobs.core.summary import RunSummary  # noqa: E402
from udfs import cnn  # noqa: E402
from udfs.embed_udfs import ImageJobOptions, image_embedder  # noqa: E402

NAME = "embed-images"
PLAN = "list image files → repartition → decode + CNN embed per worker → stage, count, publish"


@dataclass(frozen=True)
class Config(EmbedConfig):
    default_output: ClassVar[str] = "image_embeddings"
    model: str = key(cnn.DEFAULT_IMAGE_MODEL, "efficientnet-lite0/1/2 or a torchvision architecture",
                     flag="--model")
    weights_path: str = key("", "local state dict (.pth/.safetensors); torchvision models need one")
    layer: str = key("", "embed a named intermediate module (pooled) instead of the final features")
    image_size: int = key(0, "crop size in pixels; 0 = the model's native size")
    allow_random_weights: bool = key(False, "torchvision models without weights (tests only)")
    extensions: list[str] = key([], "read only files ending in these (any case, e.g. [jpg, png]); the others "
                                "are counted as skipped_extension. Empty: every file, told by its content "
                                "(Pillow); a file that is no image is a `not_an_image` row")
    batch_size: int = key(4, "images per model call (small batches stay in cache: fastest on CPU)")
    content_column: str = key("content", "tabular input: column of image bytes (else a `path` column)")
    max_pixels: int = key(64_000_000, "larger images become `too_large` rows (decompression bombs)")
    max_bytes: int = key(64 * 2**20, "larger files become `too_large` rows")
    decode_threads: int = key(0, "0 = decode inline (fastest when the CPU is the limit: measured in "
                              "BENCHMARKS.md); N = threads decoding one batch ahead (hides slow storage)")
    arrow_batch_size: int = key(256, "rows per Arrow block handed to a worker")

    def validate(self) -> None:
        super().validate()
        if self.input_format not in ("auto", "images", "parquet", "table"):
            raise ConfigError(f"key 'input_format': {self.input_format!r} is not for images; "
                              "accepted: auto, images, parquet, table")
        try:
            cnn.check_spec(self.spec)
        except ValueError as exc:
            raise ConfigError(f"key 'model': {exc}") from None
        if any(not ext.strip(".") or "/" in ext for ext in self.extensions):
            raise ConfigError(f"key 'extensions': {self.extensions!r} holds an empty extension or a `/`; "
                              "give suffixes such as [jpg, png, jfif]")
        for name in ("image_size", "decode_threads"):
            if getattr(self, name) < 0:
                raise ConfigError(f"key '{name}' must be >= 0")
        for name in ("max_pixels", "max_bytes", "arrow_batch_size"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"key '{name}' must be > 0")

    @property
    def spec(self) -> cnn.ImageModelSpec:
        return cnn.ImageModelSpec(self.model, self.weights_path, self.layer, self.image_size,
                                  self.allow_random_weights, self.precision)


def read_items(spark, cfg: Config, summary: RunSummary):
    """DataFrame(id, source, path | content) of the images to embed."""
    fmt = tables.detect_format(cfg.input, cfg.input_format)
    if fmt == "images":
        return embedding.listed_files(spark, summary, cfg.input, tuple(cfg.extensions))
    df = tables.read_input(spark, cfg.input, fmt)
    column = cfg.content_column if cfg.content_column in df.columns else "path"
    tables.require_columns(df, {"id_column": cfg.id_column, "content_column": column}, cfg.input)
    return df.select(df[cfg.id_column].cast("string").alias("id"),
                     tables.source_column(cfg.input, fmt, cfg.id_column).alias("source"),
                     df[column].alias("content" if column == cfg.content_column else "path"))


def run(spark, cfg: Config, summary: RunSummary) -> None:
    tables.prepare_output(spark, cfg.output, cfg.mode)
    with summary.timed("list inputs"):
        items = read_items(spark, cfg, summary)
    counters = embedding.counters(spark, ("decode_seconds", "model_seconds"))
    opts = ImageJobOptions(cfg.batch_size, cfg.max_pixels, cfg.max_bytes, cfg.decode_threads,
                           cfg.torch_threads)
    embedding.embed_and_publish(spark, cfg, summary, items, image_embedder(cfg.spec, opts, counters),
                                cfg.arrow_batch_size, lambda: cnn.load_image_model(cfg.spec).label)
    embedding.add_counter_stats(summary, counters)
    summary.stats["images_per_second"] = round(summary.items_per_second("embed + write"), 2)


if __name__ == "__main__":
    from jobs import cli, embed_images

    sys.exit(cli.run_job(embed_images, sys.argv[1:]))
