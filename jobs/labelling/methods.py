"""Fitting each assign-labels method's head on the driver: zero-shot, Zmap, Wmap, logistic, centroid, SetFit."""
from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from jobs.core.config import ConfigError, require_non_negative, require_positive
from jobs.labelling.examples import Examples
from udfs import finetune, heads, texts
from udfs.heads import Head
from udfs.label_sets import LabelSet

log = logging.getLogger(__name__)
CO_TRAINING = ("none", "tfidf")
SETFIT_CO_TRAINING = ("key 'co_training': tfidf works with the methods that label an embeddings table (zero-shot, "
                      "zmap, wmap, logreg, centroid); setfit self-trains on its own fine-tuned embeddings: set "
                      "co_training to none")


@dataclass(frozen=True)
class FitOptions:
    """How a head is fitted; the names are assign-labels' config keys (see its --help for each)."""

    seed: int = 0
    word_vectors: str = ""           # zmap: the target space's word2vec/GloVe file; "" = packaged GloVe 6B 50d
    vocab_size: int = 20_000
    zmap_alpha: float = 10.0
    wmap_lambda: float = 1.0
    wmap_base: str = "zmap"          # zmap | none
    logreg_c: float = 1.0
    prior_weight: float = 1.0
    self_training: int = 0
    self_training_fraction: float = 0.8
    self_training_sample: int = 20_000
    label_spreading: int = 0         # self-training: neighbours of each row in the k-NN graph; 0 = off
    label_spreading_alpha: float = 0.8
    co_training: str = "none"        # self-training: none | tfidf (a TF-IDF view of the texts beside the embeddings)
    setfit_pairs: int = 20
    setfit_sampling: str = "random"  # udfs.finetune.SAMPLINGS
    setfit_epochs: int = 1
    setfit_max_seconds: float = 600.0
    model_path: str = ""             # the table's Sentence-Transformers directory when not packaged
    vectors_path: str = ""           # word-vectors tables: the vectors file they were embedded with

    def check(self) -> None:
        """ConfigError naming the option (= config key) and what it accepts."""
        require_positive(self, "vocab_size", "setfit_pairs", "setfit_epochs", "self_training_sample")
        require_non_negative(self, "self_training", "wmap_lambda", "zmap_alpha", "label_spreading")
        if self.setfit_sampling not in finetune.SAMPLINGS:
            raise ConfigError(f"key 'setfit_sampling' expects one of {', '.join(finetune.SAMPLINGS)}, "
                              f"got {self.setfit_sampling!r}")
        if self.wmap_base not in ("zmap", "none"):
            raise ConfigError(f"key 'wmap_base' expects one of zmap, none, got {self.wmap_base!r}")
        if self.logreg_c <= 0:
            raise ConfigError("key 'logreg_c' must be > 0")
        if not 0 < self.self_training_fraction <= 1:
            raise ConfigError("key 'self_training_fraction' must be in (0, 1]")
        if not 0 < self.label_spreading_alpha < 1:
            raise ConfigError(f"key 'label_spreading_alpha' must be in (0, 1), got {self.label_spreading_alpha!r}")
        if self.co_training not in CO_TRAINING:
            raise ConfigError(f"key 'co_training' expects one of {', '.join(CO_TRAINING)}, got {self.co_training!r}")
        if self.co_training != "none" and not self.self_training:
            raise ConfigError("key 'co_training' refits its TF-IDF view on self-training's pseudo-labels; set "
                              "self_training to 1 or more rounds (3 or more: the view first labels in round 2), "
                              "or co_training to none")
        if self.label_spreading and not self.self_training:
            raise ConfigError("key 'label_spreading' spreads self-training's labels over the table's k-NN graph; "
                              "set self_training to 1 or more rounds, or label_spreading to 0")


@dataclass
class Inputs:
    label_set: LabelSet | None
    names: list[str]
    examples: Examples
    encoder: texts.TextModel | None  # the table's text encoder on the driver; None for image tables
    model: str                       # the embeddings' model name


def fit(method: str, inputs: Inputs, folder: str, opts: FitOptions,
        stats: dict[str, float]) -> tuple[Head, tuple[str, ...]]:
    """(the head of `method` fitted on `inputs`, files besides head.npz that its manifest must cover:
    setfit writes its fine-tuned encoder under `folder`). `stats` gets counts worth reporting."""
    cfg, ex = opts, inputs.examples
    params = {"seed": cfg.seed, "examples": int(len(ex.labels))}
    warn_scarce_labels(ex.labels, inputs.names, stats)
    if method == "zero-shot":
        return Head(method, inputs.names, label_vectors(inputs), embedding_model=inputs.model,
                    params={**params, "templates": list(inputs.label_set.templates)}), ()
    if method in ("zmap", "wmap"):
        labels = label_vectors(inputs)
        projection = None
        if method == "zmap" or cfg.wmap_base == "zmap":
            projection = zmap(inputs.encoder, cfg.word_vectors, cfg.vocab_size, cfg.zmap_alpha)
            params.update(zmap_alpha=cfg.zmap_alpha, vocab_size=cfg.vocab_size)
        mapped = heads.normalise(labels @ projection) if projection is not None else labels
        if method == "wmap":
            docs = ex.vectors @ projection if projection is not None else ex.vectors
            m = heads.fit_wmap(docs, mapped[ex.labels], cfg.wmap_lambda)
            projection = projection @ m if projection is not None else m
            params.update(wmap_lambda=cfg.wmap_lambda, wmap_base=cfg.wmap_base)
        return Head(method, inputs.names, mapped, projection, embedding_model=inputs.model, params=params), ()
    if method == "logreg":
        weights, bias = heads.fit_logreg(ex.vectors, ex.labels, len(inputs.names), cfg.logreg_c, cfg.seed)
        return Head(method, inputs.names, weights, bias=bias, embedding_model=inputs.model,
                    params={**params, "logreg_c": cfg.logreg_c}), ()
    if method == "centroid":
        classes = heads.centroids(ex.vectors, ex.labels, len(inputs.names))
        if inputs.label_set is not None and inputs.encoder is not None and cfg.prior_weight > 0:
            classes = heads.normalise(classes + cfg.prior_weight * label_vectors(inputs))
            params["prior_weight"] = cfg.prior_weight
        return Head(method, inputs.names, classes, embedding_model=inputs.model, params=params), ()
    return setfit(cfg, inputs, folder, stats, params)


def warn_scarce_labels(labels: np.ndarray, names: list[str], stats: dict[str, float]) -> None:
    """A warning naming each label with far fewer examples than the others (under half the median)."""
    scarce, median = heads.scarce_classes(labels, len(names))
    if scarce:
        log.warning("few examples: %s, under half the median of %g per label; logreg, setfit and "
                    "self-training weigh each label's examples as a whole, but a label learnt from so few "
                    "is unsteady: give it more", ", ".join(f"{names[c]!r} has {n}" for c, n in scarce), median)
    stats["scarce_labels"] = len(scarce)


def label_vectors(inputs: Inputs) -> np.ndarray:
    """[c, d]: each label's texts (one per template, with description and keywords) embedded, averaged."""
    return label_vectors_of(inputs.label_set,
                            lambda batch: texts.embed_texts(inputs.encoder, batch, 32).embeddings)


def label_vectors_of(label_set: LabelSet, embed: Callable[[list[str]], np.ndarray]) -> np.ndarray:
    """[c, d] zero-shot label vectors: `embed` (n texts → [n, d] normalised embeddings) is called once on
    every label's texts (label_set.texts(): one per template), and each label's are averaged
    (heads.zero_shot). The caller chooses the encoder, and may cache."""
    per_label = label_set.texts()
    vectors = embed([text for group in per_label for text in group])
    sizes = np.cumsum([0] + [len(group) for group in per_label])
    return heads.zero_shot([vectors[a:b] for a, b in zip(sizes[:-1], sizes[1:])])


def zmap(encoder: texts.TextModel, word_vectors: str, vocab_size: int, alpha: float) -> np.ndarray:
    """Z [d, w]: the ridge map from the encoder's space to word vectors (a word2vec/GloVe file, empty =
    the packaged GloVe 6B 50d), fitted on the `vocab_size` most frequent alphabetic words (heads.fit_zmap)."""
    if encoder is None or encoder.kind != "sentence":
        raise ConfigError("key 'method': zmap maps sentence embeddings to word vectors; the table was not "
                     "embedded with a sentence encoder")
    kv = texts.load_word_vectors(word_vectors)
    words = [w for w in kv.index_to_key[: vocab_size * 2] if isinstance(w, str) and w.isalpha()]
    words = words[: vocab_size]  # most frequent first in GloVe/word2vec files; punctuation left out
    sentence = texts.embed_texts(encoder, words, 64).embeddings
    log.info("zmap: fitted on %d words", len(words))
    return heads.fit_zmap(sentence, kv[words], alpha)


def setfit(cfg: FitOptions, inputs: Inputs, folder: str, stats: dict[str, float],
           params: dict) -> tuple[Head, tuple[str, ...]]:
    """Fine-tunes a fresh copy of the encoder on contrastive pairs, saves it under folder/encoder, and
    fits a logistic head on the fine-tuned embeddings of the examples (with_label_texts: each label's text
    joins them when there is a label set and prior_weight > 0; SetFit itself does not use label names)."""
    ex = inputs.examples
    model = texts.load_text_model(texts.spec_from_label(inputs.model, cfg.model_path))
    opts = finetune.FineTuneOptions(cfg.setfit_pairs, cfg.setfit_epochs, sampling=cfg.setfit_sampling,
                                    max_seconds=cfg.setfit_max_seconds, seed=cfg.seed)
    with all_cores():
        tuned = finetune.fine_tune(model.encoder, ex.texts, ex.labels, opts)
    stats.update(setfit_pairs=tuned.pairs, setfit_steps=tuned.steps, setfit_seconds=round(tuned.seconds, 1),
                 setfit_stopped_early=int(tuned.stopped_early))
    model.encoder.save(os.path.join(folder, "encoder"), safe_serialization=True)
    vectors = texts.embed_texts(model, ex.texts, 32).embeddings
    x, y, weight = vectors, ex.labels, None
    if inputs.label_set is not None and cfg.prior_weight > 0:
        prior = label_vectors_of(inputs.label_set, lambda batch: texts.embed_texts(model, batch, 32).embeddings)
        x, y, weight = with_label_texts(vectors, ex.labels, prior, cfg.prior_weight)
        params["prior_weight"] = cfg.prior_weight
    weights, bias = heads.fit_logreg(x, y, len(inputs.names), cfg.logreg_c, cfg.seed, weight)
    files = tuple(sorted(str(p.relative_to(folder)) for p in _files(os.path.join(folder, "encoder"))))
    head = Head("setfit", inputs.names, weights, bias=bias, embedding_model=f"{inputs.model}+setfit",
                params={**params, "encoder": "encoder", "base_model": inputs.model, "sampling": opts.sampling,
                        "pairs": tuned.pairs, "steps": tuned.steps, "stopped_early": tuned.stopped_early})
    return head, files


def with_label_texts(x: np.ndarray, y: np.ndarray, prior: np.ndarray, weight: float) -> tuple:
    """(x [n + c, d], y [n + c], sample weights [n + c]): the examples plus each label's text vector
    (`prior` [c, d], label_vectors) as one more example of its label, weighing `weight` × half the median
    examples per label. On AG News' training rows (8/class, seed 0, frozen MiniLM) the label texts as
    1, 2, 4, 8, 16 copies took logreg from 74.1 to 76.3, 76.7, 77.6, 77.0, 76.9 % (bench/setfit_curve.py)."""
    counts = np.bincount(y, minlength=len(prior))
    worth = weight * float(np.median(counts[counts > 0])) / 2
    return (np.vstack([x, prior]), np.concatenate([y, np.arange(len(prior))]),
            np.concatenate([np.ones(len(x)), np.full(len(prior), worth)]))


@contextlib.contextmanager
def all_cores() -> Iterator[None]:
    """torch uses every core of the driver inside the block (they are free while it fine-tunes or embeds on
    the driver), and its former thread count after."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(os.cpu_count() or 1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _files(root: str) -> list[Path]:
    return [p for p in Path(root).rglob("*") if p.is_file()]
