"""assign-labels on the driver: the label set, the examples, fitting and saving a head, self-training."""
from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from jobs.embedding import steps as embedding
from jobs.labelling import examples as example_rows
from jobs.tables import ids
from jobs.tables import publish as tables
from jobs.embedding import items as text_items
from jobs.core import yaml_loader
from jobs.core.config import ConfigError
from udfs import cnn, heads, texts
from udfs.heads import Head
from udfs.label_sets import LabelSet, parse_label_set

log = logging.getLogger(__name__)
NEEDS_LABEL_TEXT = ("zero-shot", "zmap", "wmap")
NEEDS_EXAMPLES = ("wmap", "logreg", "centroid", "setfit")


@dataclass
class Examples:
    labels: np.ndarray            # int [n]: index into the label set
    vectors: np.ndarray | None    # [n, d] embeddings, when they came from the table or were embedded
    texts: list[str] | None       # the texts, when the examples have them


def read_label_set(path: str) -> LabelSet | None:
    """The label set in the YAML file `path` (None when not given); ConfigError naming the problem.
    Every plain scalar in it is text: label names like `yes`, `off`, `null` or `2019` stay names."""
    if not path:
        return None
    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml_loader.load_text(fh)
    except OSError as exc:
        raise ConfigError(f"key 'labels': cannot read {path!r}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"key 'labels': {path!r} is not valid YAML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"key 'labels': {path!r} is not UTF-8 text ({exc.reason} at byte {exc.start}); "
                          "save it as UTF-8") from None
    try:
        return parse_label_set(data, path)
    except ValueError as exc:
        raise ConfigError(f"key 'labels': {exc}") from None


def check_label_inputs(cfg) -> None:
    """What each method needs, checked before Spark starts."""
    label_set = read_label_set(cfg.labels)
    inline = label_set is not None and any(label.examples for label in label_set.labels)
    if cfg.method in NEEDS_LABEL_TEXT and label_set is None:
        raise ConfigError(f"key 'labels': method {cfg.method} needs a label set (YAML with label names)")
    if cfg.method in NEEDS_EXAMPLES and not (cfg.examples or inline):
        raise ConfigError(f"key 'examples': method {cfg.method} needs labelled examples: --examples "
                          "(a table with label and id or text, or a folder per label) or `examples` "
                          "in the label set")


def read_source(spark, cfg) -> tuple["object", str]:
    """What gets labelled and its model: DataFrame(id, embedding, status, error) of the whole embeddings
    table (bad rows too), or DataFrame(id, source, text) of the texts for a fine-tuned encoder."""
    from pyspark.sql import functions as F

    if cfg.scores_texts:
        columns = text_items.TextColumns(cfg.id_column, cfg.text_column, [], cfg.encoding, cfg.delimiter,
                                         key="texts")
        items = text_items.read_items(spark, cfg.texts, tables.detect_format(cfg.texts, "auto"), columns)
        return ids.mark(items, cfg.id_column), cfg.model_path and Path(cfg.model_path).name or \
            texts.DEFAULT_TEXT_MODEL
    _, info = embedding.read_ok_embeddings(spark, cfg.embeddings, "to label", "label one model at a time")
    df = tables.read_input(spark, cfg.embeddings, "table" if tables.is_table(cfg.embeddings) else "parquet")
    error = F.col("error") if "error" in df.columns else F.lit(None).cast("string")
    return df.select("id", "embedding", "status", error.alias("error")), info.model


def text_spec(cfg, model: str) -> texts.TextModelSpec | None:
    """The text encoder that made `model`'s embeddings, or None for an image model."""
    spec = texts.spec_from_label(model, cfg.model_path, cfg.vectors_path)
    try:
        texts.check_spec(spec)
        return spec
    except ValueError:
        pass
    try:
        cnn.check_spec(cnn.spec_from_label(model))
        return None
    except ValueError:
        raise ConfigError(f"the embeddings' model {model!r} is neither packaged nor an image model; "
                          "set model_path to its Sentence-Transformers directory") from None


def encoder_spec(folder: str, head: Head) -> texts.TextModelSpec:
    """The fine-tuned encoder saved with a head; its name carries the files' digest, so a worker's
    model cache never serves an older encoder republished at the same path."""
    import hashlib

    files = heads.read_manifest(folder)["files"]
    digest = hashlib.sha256("".join(v for k, v in sorted(files.items())
                                    if k.startswith(head.params["encoder"] + "/")).encode()).hexdigest()
    return texts.TextModelSpec(f"{head.embedding_model}@{digest[:12]}", model_path=os.path.abspath(
        os.path.join(folder, head.params["encoder"])))


def head_for(spark, cfg, model: str, summary) -> tuple[Head, str]:
    """A saved head (checked against the table's model) or a freshly fitted and saved one."""
    if cfg.head:
        try:
            head = heads.load(cfg.head)
        except ValueError as exc:
            raise ConfigError(f"key 'head': {exc}") from None
        if not head.params.get("encoder") and head.embedding_model != model:
            raise ConfigError(f"key 'head': {cfg.head!r} was fitted on {head.embedding_model!r} embeddings, "
                              f"the table holds {model!r}")
        return head, cfg.head
    from jobs.labelling import methods as label_methods

    label_set = read_label_set(cfg.labels)
    spec = text_spec(cfg, model) if cfg.method != "setfit" else \
        texts.spec_from_label(model, cfg.model_path)
    if spec is None and cfg.method in NEEDS_LABEL_TEXT:
        raise ConfigError(f"key 'method': {cfg.method} compares texts with label names; {model!r} is an "
                          "image model — use logreg or centroid with examples")
    encoder = texts.load_text_model(spec) if spec is not None and cfg.method != "setfit" else None
    examples, names = read_examples(spark, cfg, label_set, encoder, model)
    summary.stats["examples"] = len(examples.labels)
    folder = cfg.head_output or os.path.join(cfg.warehouse, "label_heads", f"{cfg.method}-{summary.run_id}")
    staging = folder.rstrip("/") + ".partial"
    shutil.rmtree(staging, ignore_errors=True)
    head, extra = label_methods.fit(cfg, label_methods.Inputs(label_set, names, examples, encoder, model),
                                    staging, summary)
    if cfg.self_training:
        head = label_methods.self_train(spark, cfg, head, examples, summary)
    heads.save(head, staging, extra)
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(staging, folder)  # a reader sees no head or a whole one
    log.info("label head saved to %s", folder)
    return head, folder


def read_examples(spark, cfg, label_set: LabelSet | None, encoder, model: str) -> tuple[Examples, list[str]]:
    """The labelled examples (--examples, sampled per class, then the label set's own) and the label
    names in order; texts are embedded on the driver with the table's encoder."""
    table_labels, table_texts, table_vectors = [], None, None
    if cfg.examples:
        rows, table_vectors, from_texts = example_rows.read_rows(spark, cfg, model)
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
    if cfg.method in NEEDS_EXAMPLES:
        empty = [n for i, n in enumerate(names) if not np.any(y == i)]
        if empty:
            raise ConfigError(f"key 'examples': no example for label(s) {empty}; method {cfg.method} "
                              "needs at least one per label")
    if cfg.method == "setfit":
        if len(y) and all_texts is None:
            raise ConfigError("key 'examples': setfit fine-tunes on texts; give examples with a "
                              f"{cfg.text_column!r} column")
        return Examples(y, None, all_texts), names
    to_embed = inline_texts if table_vectors is not None else (all_texts or [])
    if to_embed and encoder is None:
        raise ConfigError(f"key 'examples': text examples cannot be embedded with the image model {model!r}")
    embedded = texts.embed_texts(encoder, to_embed, 32).embeddings if to_embed else None
    parts = [v for v in (table_vectors, embedded) if v is not None]
    return Examples(y, np.vstack(parts) if parts else None, all_texts), names
