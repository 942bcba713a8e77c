"""Column functions for `withColumn` / `select`, in the style of `pyspark.ml.functions.predict_batch_udf`:
an iterator pandas UDF, the model loaded once per Python worker, the pure batch function underneath."""
from __future__ import annotations

from typing import Iterator

import pandas as pd

from udfs import cnn, texts
from udfs.embed_udfs import (ImageJobOptions, TextJobOptions, embed_image_block, embed_text_block,
                             worker_image_model, worker_text_model)

# predict_batch_udf returns the prediction alone, and a bad input fails the task; here a bad row is data:
# its vector is null and its status and reason say why, as in the embeddings table
EMBEDDING_STRUCT = "embedding array<float>, status string, error string"


def image_embedding(col, *, model: str = cnn.DEFAULT_IMAGE_MODEL, precision: str = "fp32", batch_size: int = 4,
                    max_pixels: int = 64_000_000, max_bytes: int = 64 * 2**20, weights_path: str = "",
                    layer: str = "", image_size: int = 0, pooling: str = "avg", gem_p: float = 3.0,
                    flip: bool = False, concat_layer: str = "", whitening: str = "", engine: str = "auto",
                    engine_cache: str = "", scales=(1.0,)):
    """A Column of struct<embedding array<float>, status string, error string>: each value of `col` (a
    column name or Column of image file paths/URIs, or of image bytes) decoded and embedded by `model`
    (efficientnet-lite0: 1280-d; L2-normalised float32; `pooling`, `gem_p`, `flip`, `concat_layer`,
    `whitening`, `scales` as in embed-images), `batch_size` images per model call. A value that
    cannot be read or decoded gets a null embedding and its status (read_error, too_large, decode_error,
    empty, ...). `engine`: torch, onnx, openvino or auto (udfs/engines.py AUTO); an engine other than
    torch runs the ONNX export each machine makes at first use into `engine_cache` (one worker exports,
    the others wait for it). Raises SpecError (a ValueError) naming the argument when the model cannot be
    loaded.

    Example: `df.withColumn("e", image_embedding("path")).select("path", "e.embedding", "e.status")`
    """
    from pyspark.sql.functions import pandas_udf

    spec = cnn.ImageModelSpec(model, weights_path, layer, image_size, False, precision, engine=engine,
                              engine_cache=engine_cache, pooling=pooling, gem_p=gem_p, flip=flip,
                              concat_layer=concat_layer, whitening=whitening, scales=tuple(scales))
    cnn.check_spec(spec)
    opts = ImageJobOptions(batch_size, max_pixels, max_bytes)

    @pandas_udf(EMBEDDING_STRUCT)
    def embed(batches: Iterator[pd.Series]) -> Iterator[pd.DataFrame]:
        loaded, prep = worker_image_model(spec, opts)
        for values in batches:
            block = pd.DataFrame({_image_kind(values): values.to_numpy(dtype=object)})
            rows = embed_image_block(block.assign(id=None, source=None), loaded, prep, None, opts.batch_size, {})
            yield rows[["embedding", "status", "error"]]
    return embed(col)


def text_embedding(col, *, model: str = texts.DEFAULT_TEXT_MODEL, precision: str = "fp32", batch_size: int = 8,
                   max_chars: int = 100_000, model_path: str = "", vectors_path: str = "", encoding: str = "utf-8",
                   engine: str = "auto", engine_cache: str = ""):
    """A Column of struct<embedding array<float>, status string, error string>: each text of `col` (strings,
    or bytes decoded with `encoding`) cleaned, cut at `max_chars` and embedded by `model`
    (all-MiniLM-L6-v2: 384-d; or `word-vectors`: averaged GloVe, 50-d), L2-normalised. An empty,
    undecodable or all-unknown-words text gets a null embedding and its status. `engine`, `engine_cache`:
    as `image_embedding`. Raises SpecError naming the argument when the model cannot be loaded.

    Example: `df.select("id", text_embedding("text").alias("e"))`
    """
    from pyspark.sql.functions import pandas_udf

    spec = texts.TextModelSpec(model, model_path, vectors_path, max_chars, precision, engine, engine_cache)
    texts.check_spec(spec)
    opts = TextJobOptions(batch_size, encoding=encoding)

    @pandas_udf(EMBEDDING_STRUCT)
    def embed(batches: Iterator[pd.Series]) -> Iterator[pd.DataFrame]:
        loaded = worker_text_model(spec, opts)
        for values in batches:
            block = pd.DataFrame({"text": values.to_numpy(dtype=object)}).assign(id=None, source=None)
            yield embed_text_block(block, loaded, opts, {})[["embedding", "status", "error"]]
    return embed(col)


def _image_kind(values: pd.Series) -> str:
    """`content` when the batch holds bytes, else `path` (a batch of nulls: empty rows either way)."""
    first = next((v for v in values if v is not None), None)
    return "content" if isinstance(first, (bytes, bytearray)) else "path"
