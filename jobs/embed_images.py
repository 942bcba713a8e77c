"""Embed image files (a directory, a glob, or a table of bytes/paths) with a CNN into an embeddings table."""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import ClassVar, Literal

if __package__ in (None, ""):  # `spark-submit jobs/embed_images.py` without the zip: the checkout on the path
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from jobs import cli  # noqa: E402
from jobs.core.config import ConfigError, key, require_non_negative, require_positive  # noqa: E402
from jobs.core.summary import RunSummary  # noqa: E402
from jobs.embedding import incremental, items, publishing, steps  # noqa: E402
from jobs.embedding.keys import EmbedConfig  # noqa: E402
from jobs.core.paths import check_output_not_input  # noqa: E402
from jobs.embedding.whitening import WhiteningOptions, fit_whitening  # noqa: E402
from jobs.tables import contracts, inputs, publish  # noqa: E402
from udfs import cnn  # noqa: E402
from udfs.embed_udfs import ImageJobOptions  # noqa: E402

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
    pooling: Literal["avg", "gem"] = key(
        "avg", "global pooling of the feature map: avg, or gem (generalized mean, Radenović et al. 2018)")
    gem_p: float = key(3.0, "GeM's exponent p (1 = avg; larger leans towards max pooling)")
    flip: bool = key(False, "average each image's descriptor with its horizontal mirror's (2x model time)")
    scales: list[float] = key([1.0], "multi-scale descriptor (Radenović et al. 2018): the crop resized by each "
                              "factor, each scale's descriptor L2-normalised, summed; e.g. [1, 1.414] costs ~3x "
                              "the model time (images decoded at the largest; runs in torch)")
    concat_layer: str = key("", "also pool this intermediate block (e.g. _blocks.10) and concatenate it with "
                            "the last (each part L2-normalised, then the whole): the dims add up")
    whitening: str = key("", "a folder with a PCA whitening (fit_whitening) applied to each vector after pooling; "
                         "the model label records it, so queries are whitened alike")
    fit_whitening: str = key("", "after publishing, learn a PCA whitening of the output in Spark and save it to "
                             "this folder (then embed with whitening: FOLDER, or sparkamp.whiten the table)")
    whiten_dim: int = key(0, "fit_whitening: leading components kept; 0 = every one the data spans")
    whiten_shrinkage: float = key(0.0, "fit_whitening: eigenvalues shrunk towards their mean (0..1) before "
                                  "inverting, so that directions of tiny variance are not blown up")
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

    def validate(self) -> None:
        super().validate()
        if self.input_format not in ("auto", "images", "parquet", "table"):
            raise ConfigError(f"key 'input_format': {self.input_format!r} is not for images; "
                              "accepted: auto, images, parquet, table")
        steps.check_spec(self.options.spec)
        if any(not ext.strip(".") or "/" in ext for ext in self.extensions):
            raise ConfigError(f"key 'extensions': {self.extensions!r} holds an empty extension or a `/`; "
                              "give suffixes such as [jpg, png, jfif]")
        require_non_negative(self, "image_size", "decode_threads")
        require_positive(self, "max_pixels", "max_bytes")
        self.whitening_options.check()
        if self.fit_whitening:
            check_output_not_input(self.input, self.fit_whitening)

    @property
    def whitening_options(self) -> WhiteningOptions:
        return WhiteningOptions(self.whiten_dim, self.whiten_shrinkage)

    @property
    def options(self) -> steps.ImageOptions:
        spec = cnn.ImageModelSpec(self.model, self.weights_path, self.layer, self.image_size,
                                  self.allow_random_weights, self.precision, engine=self.engine,
                                  engine_cache=self.engine_cache, pooling=self.pooling, gem_p=self.gem_p,
                                  flip=self.flip, concat_layer=self.concat_layer, whitening=self.whitening,
                                  scales=tuple(self.scales))
        worker = ImageJobOptions(self.batch_size, self.max_pixels, self.max_bytes, self.decode_threads,
                                 self.torch_threads, self.arrow_batch_size)
        return steps.ImageOptions(spec, worker, self.num_partitions)


def read_items(spark, cfg: Config, stats: dict[str, float]):
    """DataFrame(id, source, path | content) of the images to embed."""
    fmt = inputs.detect_format(cfg.input, cfg.input_format)
    if fmt == "images":
        return items.listed_files(spark, stats, cfg.input, tuple(cfg.extensions))
    return items.image_items(spark, cfg.input, fmt, cfg.id_column, cfg.content_column)


def run(spark, cfg: Config, summary: RunSummary) -> None:
    publish.prepare_output(spark, cfg.output, cfg.mode)
    with summary.timed("list inputs"):
        found = read_items(spark, cfg, summary.stats)
    publishing.prepare_engine(summary, cfg.options.spec)
    counters = publishing.counters(spark, ("decode_seconds", "model_seconds"))
    kinds = {kind: kind for kind in ("path", "content") if kind in found.columns}
    columns = steps.ItemColumns(source="source", id_name=cfg.id_column, **kinds)

    def embed(todo, partitions: int):
        options = steps.ImageOptions(cfg.options.spec, cfg.options.worker, partitions)
        return steps.embed_images(todo, columns=columns, options=options, counters=counters)
    reuse = incremental.Reuse(lambda: cnn.load_image_model(cfg.options.spec).label, cfg.max_bytes)
    publishing.embed_and_publish(spark, cfg, summary, found, embed, reuse)
    publishing.add_counter_stats(summary, counters)
    if cfg.fit_whitening:
        with summary.timed("fit whitening"):
            table = contracts.read_embeddings(spark, cfg.output)
            fitted = fit_whitening(table, cfg.fit_whitening, cfg.whitening_options)
        summary.stats["whitening_output_dim"] = fitted.dims[1]
        summary.outputs.append(cfg.fit_whitening)
    summary.stats["images_per_second"] = round(summary.items_per_second("embed + write"), 2)


if __name__ == "__main__":
    sys.exit(cli.main([NAME, *sys.argv[1:]]))
