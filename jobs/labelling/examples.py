"""Labelled examples for assign-labels: a table or file of (label, text | id) rows, a DataFrame, or a folder
per label of images; checked (labelled.checked_pairs), drawn per class, brought to the driver, embedded."""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from jobs.core.config import ConfigError
from jobs.core.paths import is_table
from jobs.embedding import steps
from jobs.tables import inputs, labelled, listing
from udfs import cnn, texts
from udfs.label_sets import LabelSet

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExampleOptions:
    """How examples are read and drawn; the names are assign-labels' config keys."""

    label_column: str = "label"
    text_column: str = "text"
    id_column: str = "id"
    examples_per_class: int = 0   # drawn with `seed`; 0 = all
    seed: int = 0
    encoding: str = "utf-8"       # CSV and JSON Lines files
    delimiter: str = ","          # CSV


@dataclass(frozen=True)
class ExampleSource:
    """Where the examples are and what they are matched against."""

    spark: Any
    given: Any            # a DataFrame of examples, a location, or None
    opts: ExampleOptions
    model: str            # the table's model: a folder of images is embedded with it
    embedded: Any         # DataFrame(id, embedding) of the table's ok rows (examples given by id join it)


@dataclass
class Examples:
    labels: np.ndarray            # int [n]: index into the label set
    vectors: np.ndarray | None    # [n, d] embeddings, when they came from the table or were embedded
    texts: list[str] | None       # the texts, when the examples have them


def examples_frame(spark, location: str, opts: ExampleOptions, model: str):
    """The examples at `location` as a DataFrame: a folder with one sub-folder of images per label
    (embedded with the table's CNN: id, label, embedding), else a table or file (its columns, the label
    column named `label`)."""
    if _is_class_folders(location):
        return _embedded_folder(spark, location, model)
    read = inputs.ReadOptions(opts.encoding, inputs.csv_delimiter(opts.delimiter),
                              (opts.label_column, opts.text_column, opts.id_column), "examples")
    return inputs.read(spark, location, inputs.detect_format(location, "auto"), read)


def example_rows(df, opts: ExampleOptions, location: str, method: str,
                 embedded) -> tuple[list, np.ndarray | None, bool]:
    """([(label, text | id)], vectors or None, whether the rows carry texts) of an examples DataFrame:
    label and embedding, text or id (joined to `embedded`, the table's ok rows: id, embedding) columns.
    Rows that cannot be read, with no label or no text / id, or contradicting another row are refused;
    repeats are counted once (labelled.checked_pairs)."""
    from pyspark.sql import functions as F

    if opts.label_column not in df.columns:
        raise ConfigError(f"key 'label_column': {location!r} has no column {opts.label_column!r}; "
                          f"columns: {[c for c in df.columns if c != inputs.INPUT]}")
    if opts.label_column != "label":
        df = df.drop("label").withColumnRenamed(opts.label_column, "label")
    if "embedding" in df.columns:
        labelled.checked_pairs(df, "id", "example", "examples", location, repeats=False)
        rows = _sampled(df, opts).select("label", "id", "embedding").orderBy("id").collect()
        return [(r[0], r[1]) for r in rows], np.array([r[2] for r in rows], np.float32), False
    if opts.text_column in df.columns:
        pairs, _ = labelled.checked_pairs(df, opts.text_column, "example", "examples", location)
        rows = _sampled(pairs, opts).select("label", opts.text_column).orderBy(opts.text_column).collect()
        return [(r[0], r[1]) for r in rows], None, True
    if opts.id_column in df.columns and method != "setfit":
        pairs, _ = labelled.checked_pairs(df, opts.id_column, "example", "examples", location)
        chosen = _sampled(pairs, opts).select(F.col(opts.id_column).alias("id"), "label")
        rows = chosen.join(embedded.select("id", "embedding"), "id").orderBy("id").collect()
        if not rows:
            raise ConfigError(f"key 'examples': none of the ids in {location!r} is an ok row of the table")
        _warn_unmatched(chosen, {r["id"] for r in rows}, location)
        return [(r["label"], r["id"]) for r in rows], np.array([r["embedding"] for r in rows], np.float32), False
    raise ConfigError(f"key 'examples': {location!r} needs a {opts.text_column!r} column "
                      f"(text_column) or an {opts.id_column!r} column (id_column) beside the labels")


def read_examples(source: ExampleSource, label_set: LabelSet | None, method: str,
                  encoder: texts.TextModel | None) -> tuple[Examples, list[str]]:
    """The labelled examples (`source.given`, sampled per class), then the label set's own, and the label
    names in order; texts are embedded on the driver with `encoder` (the table's text model; None for
    an image table). ConfigError naming the key when they cannot serve `method`."""
    opts, model = source.opts, source.model
    table_labels, table_texts, table_vectors = [], None, None
    if given_examples(source.given):
        given = source.given
        location = given if isinstance(given, str) else "the examples DataFrame"
        df = examples_frame(source.spark, given, opts, model) if isinstance(given, str) else given
        rows, table_vectors, from_texts = example_rows(df, opts, location, method, source.embedded)
        table_labels = [r[0] for r in rows]
        table_texts = [r[1] for r in rows] if from_texts else None
    inline_texts, inline_labels = label_set.inline_examples() if label_set else ([], [])
    all_labels = table_labels + inline_labels
    all_texts = table_texts + inline_texts if table_texts is not None else \
        (inline_texts if not table_labels else None)
    names = label_set.names if label_set else sorted(set(all_labels))
    unknown = sorted(set(all_labels) - set(names))
    if unknown:
        raise ConfigError(f"key 'examples': labels {unknown[:10]} are not in the label set {names}")
    if len(names) < 2:
        raise ConfigError(f"key 'examples': the examples name {len(names)} label(s); at least 2 are needed")
    y = np.array([names.index(n) for n in all_labels], dtype=np.int64)
    if method in ("wmap", "logreg", "centroid", "setfit"):
        empty = [n for i, n in enumerate(names) if not np.any(y == i)]
        if empty:
            raise ConfigError(f"key 'examples': no example for label(s) {empty}; method {method} "
                              "needs at least one per label")
    if method == "setfit":
        if len(y) and all_texts is None:
            raise ConfigError("key 'examples': setfit fine-tunes on texts; give examples with a "
                              f"{opts.text_column!r} column")
        return Examples(y, None, all_texts), names
    to_embed = inline_texts if table_vectors is not None else (all_texts or [])
    if to_embed and encoder is None:
        raise ConfigError(f"key 'examples': text examples cannot be embedded with the image model {model!r}")
    vectors = texts.embed_texts(encoder, to_embed, 32).embeddings if to_embed else None
    parts = [v for v in (table_vectors, vectors) if v is not None]
    return Examples(y, np.vstack(parts) if parts else None, all_texts), names


def given_examples(value: Any) -> bool:
    """Whether examples were given: a DataFrame, or a location that is not empty."""
    return bool(value) if isinstance(value, str) else value is not None


def _sampled(df, opts: ExampleOptions):
    """`examples_per_class` rows of each label, drawn with `seed`; all of them when 0."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    if not opts.examples_per_class:
        return df
    window = Window.partitionBy("label").orderBy(F.rand(opts.seed))
    return df.withColumn("_n", F.row_number().over(window)).filter(F.col("_n") <= opts.examples_per_class)


def _warn_unmatched(chosen, matched: set, location: str) -> None:
    """Logs the example ids that are not ok rows of the embeddings table (they are not used)."""
    missing = sorted(r["id"] for r in chosen.select("id").collect() if r["id"] not in matched)
    if missing:
        log.warning("examples: %d id(s) of %s are not ok rows of the embeddings table and are not used: %s%s",
                    len(missing), location, ", ".join(map(repr, missing[:10])), ", ..." if len(missing) > 10 else "")


def _is_class_folders(path: str) -> bool:
    return os.path.isdir(path) and not is_table(path) and \
        inputs.detect_format(path, "auto") == "images" and any(p.is_dir() for p in Path(path).iterdir())


def _embedded_folder(spark, folder: str, model: str):
    """DataFrame(id, label, embedding) of a folder-per-label image tree, embedded with the table's CNN."""
    from pyspark.sql import functions as F

    try:
        spec = cnn.spec_from_label(model)
        cnn.check_spec(spec)
    except ValueError:
        raise ConfigError(f"key 'examples': a folder of images needs an image embeddings table; "
                          f"{model!r} is not an image model") from None
    files = listing.list_files(spark, folder).items
    embedded = steps.embed_images(files, columns=steps.ItemColumns(source="source", path="path"),
                                  options=steps.ImageOptions(spec)).cache()
    bad = embedded.filter("status != 'ok'").select("id", "error").collect()
    for row in bad[:5]:
        log.warning("example %s skipped: %s", row["id"], row["error"])
    named = embedded.filter("status = 'ok'").withColumn("label", F.regexp_extract("id", r"^([^/]+)/", 1))
    return named.filter(F.col("label") != "").select("id", "label", "embedding")
