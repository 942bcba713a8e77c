"""Labelled examples for assign-labels: a table or file of (label, text | id) rows, or a folder per label
of images; checked (labelled.checked_pairs), drawn per class, brought to the driver."""
from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from jobs.tables import inputs
from jobs.tables import labelled
from jobs.tables import listing
from jobs.tables import publish as tables
from jobs.core.config import ConfigError
from udfs import cnn

log = logging.getLogger(__name__)


def read_rows(spark, cfg, model: str) -> tuple[list, np.ndarray | None, bool]:
    """([(label, text | id)], vectors or None, whether the rows carry texts) from `examples`. Rows that
    cannot be read, with no label or no text / id, or contradicting another row are refused; repeats are
    counted once (labelled.checked_pairs)."""
    from pyspark.sql import functions as F

    if _is_class_folders(cfg.examples):
        df = _embedded_folder(spark, cfg.examples, model)
    else:
        opts = inputs.ReadOptions(cfg.encoding, inputs.csv_delimiter(cfg.delimiter),
                                  (cfg.label_column, cfg.text_column, cfg.id_column), "examples")
        df = tables.read_input(spark, cfg.examples, tables.detect_format(cfg.examples, "auto"), opts)
        if cfg.label_column not in df.columns:
            raise ConfigError(f"key 'label_column': {cfg.examples!r} has no column {cfg.label_column!r}; "
                              f"columns: {[c for c in df.columns if c != inputs.INPUT]}")
        if cfg.label_column != "label":
            df = df.drop("label").withColumnRenamed(cfg.label_column, "label")
    if "embedding" in df.columns:
        labelled.checked_pairs(df, "id", "example", "examples", cfg.examples, repeats=False)
        rows = _sampled(df, cfg).select("label", "id", "embedding").orderBy("id").collect()
        return [(r[0], r[1]) for r in rows], np.array([r[2] for r in rows], np.float32), False
    if cfg.text_column in df.columns:
        pairs, _ = labelled.checked_pairs(df, cfg.text_column, "example", "examples", cfg.examples)
        rows = _sampled(pairs, cfg).select("label", cfg.text_column).orderBy(cfg.text_column).collect()
        return [(r[0], r[1]) for r in rows], None, True
    if cfg.id_column in df.columns and cfg.method != "setfit":
        pairs, _ = labelled.checked_pairs(df, cfg.id_column, "example", "examples", cfg.examples)
        table = tables.read_input(spark, cfg.embeddings, "table" if tables.is_table(cfg.embeddings) else "parquet")
        chosen = _sampled(pairs, cfg).select(F.col(cfg.id_column).alias("id"), "label")
        rows = chosen.join(table.filter("status = 'ok'").select("id", "embedding"), "id").orderBy("id").collect()
        if not rows:
            raise ConfigError(f"key 'examples': none of the ids in {cfg.examples!r} is an ok row of "
                              f"{cfg.embeddings!r}")
        _warn_unmatched(chosen, {r["id"] for r in rows}, cfg)
        return [(r["label"], r["id"]) for r in rows], np.array([r["embedding"] for r in rows], np.float32), False
    raise ConfigError(f"key 'examples': {cfg.examples!r} needs a {cfg.text_column!r} column "
                      f"(text_column) or an {cfg.id_column!r} column (id_column) beside the labels")


def _sampled(df, cfg):
    """`examples_per_class` rows of each label, drawn with `seed`; all of them when 0."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    if not cfg.examples_per_class:
        return df
    window = Window.partitionBy("label").orderBy(F.rand(cfg.seed))
    return df.withColumn("_n", F.row_number().over(window)).filter(F.col("_n") <= cfg.examples_per_class)


def _warn_unmatched(chosen, matched: set, cfg) -> None:
    """Logs the example ids that are not ok rows of the embeddings table (they are not used)."""
    missing = sorted(r["id"] for r in chosen.select("id").collect() if r["id"] not in matched)
    if missing:
        log.warning("examples: %d id(s) of %s are not ok rows of %s and are not used: %s%s", len(missing),
                    cfg.examples, cfg.embeddings, ", ".join(map(repr, missing[:10])),
                    ", ..." if len(missing) > 10 else "")


def _is_class_folders(path: str) -> bool:
    return os.path.isdir(path) and not tables.is_table(path) and \
        tables.detect_format(path, "auto") == "images" and any(p.is_dir() for p in Path(path).iterdir())


def _embedded_folder(spark, folder: str, model: str):
    """DataFrame(id, label, embedding) of a folder-per-label image tree, embedded with the table's CNN."""
    from pyspark.sql import functions as F
    from udfs.embed_udfs import EMBEDDINGS_SCHEMA, ImageJobOptions, image_embedder

    try:
        spec = cnn.spec_from_label(model)
        cnn.check_spec(spec)
    except ValueError:
        raise ConfigError(f"key 'examples': a folder of images needs an image embeddings table; "
                          f"{model!r} is not an image model") from None
    files = listing.list_files(spark, folder).items
    embedded = files.mapInPandas(image_embedder(spec, ImageJobOptions(), {}), EMBEDDINGS_SCHEMA).cache()
    bad = embedded.filter("status != 'ok'").select("id", "error").collect()
    for row in bad[:5]:
        log.warning("example %s skipped: %s", row["id"], row["error"])
    named = embedded.filter("status = 'ok'").withColumn("label", F.regexp_extract("id", r"^([^/]+)/", 1))
    return named.filter(F.col("label") != "").select("id", "label", "embedding")
