"""The embedding steps as DataFrame functions: items (image paths or bytes, texts or text files) in, rows
of the embeddings table out. `sparkamp.embed_images` / `embed_texts` and the two embedding jobs call them."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from jobs.core.config import ConfigError
from jobs.tables import contracts, ids
from udfs import cnn, engines, pooling, texts
from udfs.engine_exports import ExportError
from udfs.embed_udfs import ImageJobOptions, TextJobOptions, image_embedder, text_embedder
from udfs.status import SpecError

PRESET = ("status", "error", "_order", "_where")  # what a reader found wrong with a row, and where it is


@dataclass(frozen=True)
class ItemColumns:
    """Which columns of the caller's DataFrame hold an item's id, its source and what is embedded."""

    id: str = "id"
    source: str = ""     # where each item came from; "" = the path, else null
    path: str = ""       # a file to read (images, or texts read whole): a local path or any pyarrow URI
    content: str = ""    # image bytes
    text: str = ""       # a string (or bytes, decoded with the options' encoding)
    id_name: str = ""    # the id column as the user named it, for messages; "" = `id`


@dataclass(frozen=True)
class ImageOptions:
    """How images are embedded: the model, the worker's limits, the partitions."""

    spec: cnn.ImageModelSpec = field(default_factory=lambda: cnn.ImageModelSpec(cnn.DEFAULT_IMAGE_MODEL))
    worker: ImageJobOptions = ImageJobOptions()
    partitions: int = 0  # Spark partitions embedded in; 0 = 2 x the cluster's cores


@dataclass(frozen=True)
class TextOptions:
    """How texts are embedded: the model, the worker's options, the partitions."""

    spec: texts.TextModelSpec = field(default_factory=lambda: texts.TextModelSpec(texts.DEFAULT_TEXT_MODEL))
    worker: TextJobOptions = TextJobOptions()
    partitions: int = 0


def check_spec(spec: cnn.ImageModelSpec | texts.TextModelSpec) -> None:
    """ConfigError naming the key at fault when the model cannot be used (nothing is loaded)."""
    try:
        (cnn.check_spec if isinstance(spec, cnn.ImageModelSpec) else texts.check_spec)(spec)
    except SpecError as exc:
        raise ConfigError(f"key '{exc.field}': {exc}") from None


@dataclass(frozen=True)
class PreparedEngine:
    """What `prepare_engine` found on the driver: the spec the workers get, the engine that ran here,
    and the seconds its export took here (0 when it was in the cache, or for torch)."""

    spec: Any                   # cnn.ImageModelSpec | texts.TextModelSpec
    engine: str
    export_seconds: float = 0.0


_PREPARED: dict[Any, PreparedEngine] = {}  # spec → what prepare_engine made of it, once per driver


def prepare_engine(spec: cnn.ImageModelSpec | texts.TextModelSpec) -> PreparedEngine:
    """For an engine other than torch (auto resolved by udfs.engines.resolve) the model is loaded once
    on the driver before any task: its ONNX export is made, or found in `engine_cache`, so the workers
    of this machine read it from the cache, and a model that cannot be exported, a cache that cannot be
    written or a layer the model lacks is a ConfigError before any work. The workers get the spec as
    given (auto resolves again on each machine: one without the engine's package runs torch), except
    that auto becomes torch when the model does not export. Torch: nothing loaded."""
    image = isinstance(spec, cnn.ImageModelSpec)
    kind = "images" if image else "words" if spec.name == texts.WORD_VECTORS else "texts"
    if engines.resolve(spec.engine, kind, spec.precision) == "torch" or (image and pooling.multi_scale(spec.scales)):
        return PreparedEngine(spec, "torch")  # several scales run in torch (udfs.pooling.check_scales)
    if spec not in _PREPARED:
        try:
            runner = _keeping_active_session(lambda: (cnn.load_image_model if image else texts.load_text_model)(spec)
                                             ).runner
        except ExportError as exc:
            raise ConfigError(f"key 'engine': {exc}; engine torch runs this model") from None
        except SpecError as exc:
            raise ConfigError(f"key '{exc.field}': {exc}") from None
        except OSError as exc:
            raise ConfigError(f"key 'engine_cache': {exc}; name a folder this machine can write") from None
        except ValueError as exc:  # what the model's own check found (a layer it does not have)
            raise ConfigError(f"key '{'layer' if 'layer' in str(exc) else 'model'}': {exc}") from None
        _PREPARED[spec] = (PreparedEngine(spec, runner.engine, runner.export.seconds) if runner is not None
                           else PreparedEngine(dataclasses.replace(spec, engine="torch"), "torch"))
    return _PREPARED[spec]


def _keeping_active_session(load: Any) -> Any:
    """`load()`, after which the caller's active SparkSession is still the active one. Seen here: after an
    export and OpenVINO compile on the driver, SparkSession.getActiveSession() was None (the JVM keeps
    the active session per thread, and py4j had this Python thread on another JVM thread), so the next
    job in the process built a session of its own and stopped the shared SparkContext when it ended."""
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    try:
        return load()
    finally:
        if active is not None and SparkSession.getActiveSession() is None:
            active._jvm.SparkSession.setActiveSession(active._jsparkSession)


def embed_images(df, *, columns: ItemColumns = ItemColumns(path="path"), options: ImageOptions = ImageOptions(),
                 counters: dict[str, Any] | None = None):
    """Rows of the embeddings table, one per row of `df` (contracts.EMBEDDINGS): each image (a file at
    `columns.path`, or the bytes in `columns.content`) decoded and embedded by `options.spec` on the
    workers, L2-normalised float32 [dim]; a row that cannot be is a row with its status and reason
    (read_error, too_large, not_an_image, decode_error, ...), and so is a null/blank id (missing_id)
    or a repeated one (duplicate_id). Lazy: no row is read until the result is used. ConfigError when
    the model cannot be used or a named column is missing; the model's engine is prepared on the driver
    first (`prepare_engine`: an ONNX export made or found in the cache). `counters`: Spark accumulators by name
    (decode_seconds, model_seconds) the workers add to."""
    check_spec(options.spec)
    items = marked_items(df, columns, ("path", "content"))  # a missing column is refused before the export
    embedder = image_embedder(prepare_engine(options.spec).spec, options.worker, counters or {})
    return _embedded(items, embedder, options.partitions)


def embed_texts(df, *, columns: ItemColumns = ItemColumns(text="text"), options: TextOptions = TextOptions(),
                counters: dict[str, Any] | None = None):
    """Rows of the embeddings table, one per row of `df`: each text (`columns.text`, or a file read whole
    at `columns.path`) cleaned, cut at `spec.max_chars` and embedded by `options.spec` (a sentence
    encoder: 384-d for all-MiniLM-L6-v2; or averaged word vectors), L2-normalised; empty, undecodable
    and unknown-word texts, and missing or repeated ids, are rows with their status. Lazy. ConfigError
    as `embed_images`. `counters`: model_seconds, truncated, tokens, known_tokens."""
    check_spec(options.spec)
    items = marked_items(df, columns, ("path", "text"))
    embedder = text_embedder(prepare_engine(options.spec).spec, options.worker, counters or {})
    return _embedded(items, embedder, options.partitions)


def marked_items(df, columns: ItemColumns, kinds: tuple[str, ...] = ("text",)):
    """The items of `df` (`columns`, one of `kinds` to embed or score) with missing and repeated ids
    marked (`ids.mark`): what a fine-tuned encoder scores."""
    return ids.mark(_items(df, columns, kinds), columns.id_name or columns.id)


def _items(df, columns: ItemColumns, kinds: tuple[str, ...]):
    """DataFrame(id, source, <kind>[, status, error, _order, _where]): the item columns renamed as the
    embedders read them, with what a reader found wrong with a row (`PRESET`) when `df` has it."""
    from pyspark.sql import functions as F

    given = {kind: getattr(columns, kind) for kind in kinds if getattr(columns, kind)}
    if len(given) != 1:
        raise ConfigError(f"name one column of {' or '.join(f'{k}_col' for k in kinds)} to embed, got "
                          f"{', '.join(f'{k}_col={v!r}' for k, v in given.items()) or 'none'}")
    named = {"id_col": columns.id, **{f"{k}_col": v for k, v in given.items()},
             **({"source_col": columns.source} if columns.source else {})}
    contracts.require_columns(df, named, "the items DataFrame")
    (kind, column), = given.items()
    source = columns.source or (column if kind == "path" else "")
    picked = [F.col(columns.id).cast("string").alias("id"),
              (F.col(source).cast("string") if source else F.lit(None).cast("string")).alias("source"),
              F.col(column).alias(kind)]
    return df.select(*picked, *[F.col(c) for c in PRESET if c in df.columns])


def _embedded(items, embedder, partitions: int):
    count = partitions or 2 * items.sparkSession.sparkContext.defaultParallelism
    return items.repartition(count).mapInPandas(embedder, contracts.EMBEDDINGS.schema)
