"""The label playground: one text scored against an editable label list, zero-shot, Zmap or a fitted head."""
from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from jobs.app.engine import embed_one
from jobs.core.config import ConfigError
from jobs.labelling import fitting, methods
from jobs.labelling.sets import read_label_set
from udfs import heads, texts
from udfs.heads import Head
from udfs.label_sets import DEFAULT_TEMPLATES, LabelSet, parse_label_set

log = logging.getLogger(__name__)
METHODS = ("zero-shot", "zmap", "head")
MAX_LABELS = 100
CACHED_TEXTS = 4096  # label texts whose embeddings are kept (editing one label re-embeds only it)


@dataclass(frozen=True)
class PlaygroundOptions:
    encoder: str                # the text model's label (`model` column value)
    label_set: str = ""         # a label-set YAML: the starting labels and the templates
    head: str = ""              # a saved label head (assign-labels' head_output)
    zmap_vocab_size: int = 20_000
    max_text_chars: int = 10_000


class ZmapNotReady(RuntimeError):
    """Zmap is being fitted in the background (once per server); the request may be retried."""


class Playground:
    """Models load once; the text encoder is shared by requests under a lock (its tokenizer is not
    thread-safe); label-text embeddings are cached; Zmap is fitted on first use, in the background."""

    def __init__(self, opts: PlaygroundOptions):
        self.opts = opts
        self.encoder = texts.load_text_model(texts.spec_from_label(opts.encoder))
        self.label_set = read_label_set(opts.label_set, key="label_set")
        self.head = _load_head(opts.head) if opts.head else None
        self.head_encoder = self.encoder
        if self.head is not None and self.head.params.get("encoder"):  # setfit: its fine-tuned encoder
            self.head_encoder = texts.load_text_model(fitting.encoder_spec(opts.head, self.head))
        self._zmap = self.head.projection if self.head is not None and self.head.method == "zmap" else None
        self._zmap_started: float | None = None
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock, self._head_lock, self._zmap_lock = threading.Lock(), threading.Lock(), threading.Lock()

    @property
    def templates(self) -> tuple[str, ...]:
        return self.label_set.templates if self.label_set is not None else DEFAULT_TEMPLATES

    def starting_labels(self) -> list[dict]:
        """The labels the page starts with: the label set's, else the head's names."""
        if self.label_set is not None:
            return [{"name": lb.name, "description": lb.description} for lb in self.label_set.labels]
        return [{"name": name, "description": ""} for name in (self.head.labels if self.head else [])]

    def labels_from(self, labels: list | None) -> LabelSet:
        """A LabelSet of the request's labels (names, or {name, description, keywords}) with the
        server's templates; ValueError naming what is wrong."""
        if labels is None:
            if self.label_set is None:
                raise ValueError("labels: give a list of at least 2 label names")
            return self.label_set
        if not isinstance(labels, list) or len(labels) > MAX_LABELS:
            raise ValueError(f"labels: a list of 2 to {MAX_LABELS} names or {{name, description}} mappings")
        cleaned = [{k: v for k, v in lb.items() if v not in ("", None, [])} if isinstance(lb, dict) else lb
                   for lb in labels]
        return parse_label_set({"labels": cleaned, "templates": list(self.templates)}, "labels")

    def score(self, text: str, labels: list | None, method: str) -> dict:
        """{labels: [names], scores: [{label, score}] best first, vector: [1, d] the text's embedding,
        timings_ms: {embed, score}}; ValueError for bad labels or method, RowError for a bad text,
        ZmapNotReady while Zmap is fitted."""
        if method not in METHODS:
            raise ValueError(f"method: {method!r}; accepted: {', '.join(METHODS)}")
        start = time.perf_counter()
        if method == "head":
            if self.head is None:
                raise ValueError("method head: no fitted head was given (start the server with --labels-head)")
            vector = embed_one(self.head_encoder, text, self.opts.max_text_chars, self._head_lock)
            head = self.head
        else:
            label_set = self.labels_from(labels)
            projection = self.zmap() if method == "zmap" else None
            vector = embed_one(self.encoder, text, self.opts.max_text_chars, self._lock)
            classes = methods.label_vectors_of(label_set, self._embed_cached)
            if projection is not None:
                classes = heads.normalise(classes @ projection)
            head = Head(method, label_set.names, classes, projection)
        embedded = time.perf_counter()
        scores = head.scores(vector)[0]
        order = np.argsort(-scores, kind="stable")
        return {"method": method, "labels": head.labels, "vector": vector,
                "scores": [{"label": head.labels[i], "score": float(scores[i])} for i in order],
                "timings_ms": {"embed": (embedded - start) * 1000, "score": (time.perf_counter() - embedded) * 1000}}

    def _embed_cached(self, batch: list[str]) -> np.ndarray:
        with self._lock:
            missing = [t for t in dict.fromkeys(batch) if t not in self._cache]
            if missing:
                for text, vector in zip(missing, texts.embed_texts(self.encoder, missing, 32).embeddings):
                    self._cache[text] = vector
            for text in batch:
                self._cache.move_to_end(text)
            vectors = np.stack([self._cache[t] for t in batch])
            while len(self._cache) > CACHED_TEXTS:
                self._cache.popitem(last=False)
        return vectors

    def zmap(self) -> np.ndarray:
        """Z [d, w] (a zmap head's own, or fitted here once with assign-labels' defaults on a second copy
        of the encoder, in a background thread); ZmapNotReady until it is done."""
        with self._zmap_lock:
            if self._zmap is not None:
                return self._zmap
            if self.encoder.kind != "sentence":
                raise ValueError(f"method zmap maps sentence embeddings to word vectors; {self.encoder.label} "
                                 "is not a sentence encoder")
            if self._zmap_started is None:
                self._zmap_started = time.time()
                threading.Thread(target=self._fit_zmap, name="fit-zmap", daemon=True).start()
            waited = time.time() - self._zmap_started
        raise ZmapNotReady(f"Zmap is being fitted on {self.opts.zmap_vocab_size} words (once per server; "
                           f"{waited:.0f} s so far); retry in a few seconds")

    def _fit_zmap(self) -> None:
        defaults = methods.FitOptions()  # the same word vectors and ridge strength as assign-labels
        try:
            encoder = texts.load_text_model(self.encoder.spec)  # its own copy: requests keep theirs
            z = methods.zmap(encoder, defaults.word_vectors, self.opts.zmap_vocab_size, defaults.zmap_alpha)
        except Exception:  # logged; the next request starts a new fit
            log.exception("fitting Zmap failed")
            z = None
        with self._zmap_lock:
            self._zmap = z
            if z is None:
                self._zmap_started = None


def _load_head(folder: str) -> Head:
    try:
        return heads.load(folder)
    except ValueError as exc:
        raise ConfigError(f"key 'labels_head': {exc}") from None
