"""assign-labels' heads on the driver: a saved head loaded and checked, or one fitted (examples read, the
method fitted, self-trained) and saved whole."""
from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from index import store
from jobs.core.config import ConfigError
from jobs.labelling import methods
from jobs.labelling.examples import ExampleOptions, Examples, ExampleSource, read_examples
from jobs.labelling.methods import FitOptions
from jobs.labelling.self_training import corpus_sample, corpus_text_sample, self_train, text_sample
from jobs.labelling.sets import NEEDS_LABEL_TEXT
from udfs import cnn, heads, texts
from udfs.heads import Head
from udfs.label_sets import LabelSet

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LabelRequest:
    """What head to fit: the method, the label set, the examples and how to read and fit them."""

    method: str = "zero-shot"
    label_set: LabelSet | None = None
    examples: Any = None                                   # a DataFrame, a location, or None
    fit: FitOptions = field(default_factory=FitOptions)
    columns: ExampleOptions = field(default_factory=ExampleOptions)


def text_spec(model: str, fit: FitOptions) -> texts.TextModelSpec | None:
    """The text encoder that made `model`'s embeddings, or None for an image model."""
    spec = texts.spec_from_label(model, fit.model_path, fit.vectors_path)
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


def local_head(path: str) -> str:
    """A local folder holding the saved head at `path` (itself, or a copy of a remote one)."""
    return store.download_dir(path, tempfile.mkdtemp(prefix="sparkamp-head-"))


def encoder_spec(folder: str, head: Head) -> texts.TextModelSpec:
    """The fine-tuned encoder saved with a head in the local `folder`; its name carries the files' digest,
    so a worker's model cache never serves an older encoder republished at the same path."""
    files = heads.read_manifest(folder)["files"]
    digest = hashlib.sha256("".join(v for k, v in sorted(files.items())
                                    if k.startswith(head.params["encoder"] + "/")).encode()).hexdigest()
    return texts.TextModelSpec(f"{head.embedding_model}@{digest[:12]}", model_path=os.path.abspath(
        os.path.join(folder, head.params["encoder"])))


def load_head(folder: str, model: str) -> Head:
    """The head saved in the local `folder`, checked against the table's `model` (ConfigError)."""
    try:
        head = heads.load(folder)
    except ValueError as exc:
        raise ConfigError(f"key 'head': {exc}") from None
    if not head.params.get("encoder") and head.embedding_model != model:
        raise ConfigError(f"key 'head': {folder!r} was fitted on {head.embedding_model!r} embeddings, "
                          f"the table holds {model!r}")
    return head


def self_training_inputs(request: LabelRequest, model: str, tables: tuple, staging: str,
                         examples: Examples) -> tuple[np.ndarray, list | None, Examples]:
    """(the [m, d] corpus sample self-training labels, its m texts for co-training (None when co_training is
    none, and for setfit; None for a row without one), the examples with vectors in the same space). `tables` = (the
    embeddings table's ok rows, the text items; with co-training, the ok rows carry a text column).
    setfit: a sample of the items' texts and the examples embedded on the driver with the fine-tuned
    encoder saved in `staging` (self_training_sample bounds the driver's work: ~60 texts/s on 2 cores)."""
    fit, encoding = request.fit, request.columns.encoding
    if request.method != "setfit":
        if fit.co_training == "none":
            return corpus_sample(tables[0], fit.self_training_sample, fit.seed), None, examples
        return (*corpus_text_sample(tables[0], fit.self_training_sample, fit.seed, encoding), examples)
    tuned = texts.load_text_model(texts.spec_from_label(model, os.path.join(staging, "encoder")))
    sample = text_sample(tables[1], fit.self_training_sample, fit.seed, encoding)
    with methods.all_cores():
        vectors = texts.embed_texts(tuned, examples.texts, 32).embeddings
        embedded = texts.embed_texts(tuned, sample, 32).embeddings if sample else vectors[:0]
    return embedded, None, dataclasses.replace(examples, vectors=vectors)


def fit_head(request: LabelRequest, model: str, source, folder: str, stats: dict[str, float]) -> Head:
    """The head `request` asks for, fitted on the driver for `source` (an embeddings table's rows of
    `model`; for setfit, the text items it will label) and saved whole at `folder` (any filesystem): a
    reader sees no head or a complete one. `stats` gets the examples' count and the method's own counts.
    ConfigError naming the key when the inputs cannot serve the method."""
    from pyspark.sql import functions as F

    method, fit = request.method, request.fit
    if fit.co_training != "none" and method == "setfit":  # the CLI refuses it earlier; a notebook call here
        raise ConfigError(methods.SETFIT_CO_TRAINING)
    if fit.co_training != "none" and "text" not in source.columns:
        raise ConfigError("key 'co_training': tfidf reads each row's text beside its embedding; the table has "
                          "no text column (assign-labels: set key texts; a notebook: give the DataFrame one)")
    ok = source.filter(F.col("status") == "ok") if "embedding" in source.columns else None
    embedded = ok.select("id", "embedding") if ok is not None else None
    spec = text_spec(model, fit) if method != "setfit" else texts.spec_from_label(model, fit.model_path)
    if spec is None and method in NEEDS_LABEL_TEXT:
        raise ConfigError(f"key 'method': {method} compares texts with label names; {model!r} is an "
                          "image model — use logreg or centroid with examples")
    encoder = texts.load_text_model(spec) if spec is not None and method != "setfit" else None
    given = ExampleSource(source.sparkSession, request.examples, request.columns, model, embedded)
    examples, names = read_examples(given, request.label_set, method, encoder)
    stats["examples"] = len(examples.labels)
    local = store.local_path(folder)
    staging = local.rstrip("/") + ".partial" if local else tempfile.mkdtemp(prefix="sparkamp-head-")
    shutil.rmtree(staging, ignore_errors=True)
    head, extra = methods.fit(method, methods.Inputs(request.label_set, names, examples, encoder, model),
                              staging, fit, stats)
    if fit.self_training:
        sample, sample_texts, in_space = self_training_inputs(request, model, (ok, source), staging, examples)
        head = self_train(sample, fit, head, in_space, stats, sample_texts)
    heads.save(head, staging, extra)
    if local:
        shutil.rmtree(local, ignore_errors=True)
        os.replace(staging, local)  # a reader sees no head or a whole one
    else:
        store.delete_dir(folder)
        store.upload_dir(staging, folder)
    log.info("label head saved to %s", folder)
    return head

