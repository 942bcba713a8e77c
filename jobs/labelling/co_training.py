"""Co-training's second view on the driver: the TF-IDF view of the sample's and the examples' texts, refitted
on each self-training round's pseudo-labels (jobs.labelling.self_training)."""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from jobs.labelling.examples import Examples
from udfs import lexical

log = logging.getLogger(__name__)


@dataclass
class TextView:
    """Co-training's texts: the sample's (transductive) and the examples', vectorised once."""

    vectorizer: object
    texts: list[str]           # the sample rows' texts that exist
    rows: np.ndarray           # int: their rows in the sample
    examples: tuple[list[str], np.ndarray]   # the examples' texts and labels
    seed: int

    @classmethod
    def of(cls, sample_texts: list[str | None] | None, ex: Examples, seed: int) -> "TextView | None":
        """The view's inputs, or None (with a warning) when the texts share no term in two of them."""
        rows = np.array([i for i, t in enumerate(sample_texts or []) if t is not None], dtype=np.int64)
        written = [sample_texts[i] for i in rows]
        if sample_texts and len(rows) < len(sample_texts):
            log.warning("co_training: %d of the %d sampled rows have no readable text (no row of key texts with "
                        "their id, or an empty or unreadable one); the TF-IDF view learns without them and they "
                        "are scored by their embeddings alone", len(sample_texts) - len(rows), len(sample_texts))
        examples = (list(ex.texts), np.asarray(ex.labels)) if ex.texts else ([], np.zeros(0, np.int64))
        try:
            vectorizer = lexical.vocabulary(written + examples[0])
        except ValueError:
            log.warning("co_training: the %d texts of the sample and examples share no term (beyond stop words) "
                        "in two texts; self-training runs on the embeddings alone", len(written) + len(examples[0]))
            return None
        return cls(vectorizer, written, rows, examples, seed)

    def fit(self, keep: np.ndarray, predicted: np.ndarray, n_classes: int) -> lexical.LexicalView | None:
        """The TF-IDF view fitted on the kept sample rows that have a text (their pseudo-labels) and the
        examples' texts (their labels); None when they hold one label only."""
        kept = keep[self.rows]
        labels = np.concatenate([predicted[self.rows][kept], self.examples[1]]).astype(np.int64)
        if len(np.unique(labels)) < 2:
            return None
        texts = [t for t, k in zip(self.texts, kept) if k] + self.examples[0]
        return lexical.fit(self.vectorizer, texts, labels, n_classes, self.seed)
