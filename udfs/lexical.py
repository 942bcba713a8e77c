"""The TF-IDF view of co-training: a bag-of-words logistic classifier of texts, fitted and applied with
scikit-learn, kept as plain arrays (no pickle) so a label head can save and broadcast it."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from udfs import texts as text_cleaning
from udfs.logistic import class_rows
from udfs.status import RowError

# TfidfVectorizer's settings, the same when fitting and scoring (not saved with a view: these constants
# are what a saved view is read with, so changing them means refitting co-trained heads)
VECTORIZER = {"sublinear_tf": True, "stop_words": "english", "lowercase": True}
MIN_DF = 2               # a term in one text only says nothing about the others
MAX_TERMS = 50_000       # bounds the view: [labels, terms] weights broadcast to every worker
# Inverse regularisation of the TF-IDF classifier. On the first half of the AG News test rows (MiniLM,
# 3 draws; BENCHMARKS.md, co-training): C = 1, 10, 100 gave 86.4, 86.4, 86.2 % at 8 examples/class,
# C = 1, 10 gave 86.8, 87.2 % at 64.
C = 10.0


@dataclass
class LexicalView:
    """Label probabilities of texts from their words: TF-IDF (scikit-learn's TfidfVectorizer with
    VECTORIZER) → multinomial logistic regression. `terms` [v] in column order, `idf` [v] float32,
    `weights` [c, v] float32, `bias` [c] float32."""

    terms: np.ndarray
    idf: np.ndarray
    weights: np.ndarray
    bias: np.ndarray

    def probabilities(self, texts: list[str]) -> np.ndarray:
        """[n, c] label probabilities (softmax) of `texts` (n strings; an empty one, or one of unseen words
        only, gets the bias alone)."""
        x = self._vectorizer().transform(texts)
        logits = np.asarray(x @ self.weights.T) + self.bias
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return p / p.sum(axis=1, keepdims=True)

    def _vectorizer(self):
        from sklearn.feature_extraction.text import TfidfVectorizer

        if getattr(self, "_fitted", None) is None:  # built once per process (a worker's broadcast copy)
            vectorizer = TfidfVectorizer(vocabulary=[str(t) for t in self.terms], **VECTORIZER)
            vectorizer.idf_ = self.idf
            self._fitted = vectorizer
        return self._fitted

    def __getstate__(self) -> dict:  # the vectorizer is rebuilt where it is used, not pickled
        return {k: v for k, v in self.__dict__.items() if k != "_fitted"}


def vocabulary(texts: list[str]):
    """A TfidfVectorizer fitted on `texts` (the table's sample, transductively, and the examples' texts):
    terms in >= MIN_DF texts, at most MAX_TERMS of the most frequent. ValueError when no term qualifies
    (too few texts, or stop words only)."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    return TfidfVectorizer(min_df=min(MIN_DF, len(texts)), max_features=MAX_TERMS, **VECTORIZER).fit(texts)


def fit(vectorizer, texts: list[str], labels: np.ndarray, n_classes: int, seed: int) -> LexicalView:
    """The view fitted on `texts` (n strings) with int `labels` [n] in 0..n_classes-1, class-balanced
    (scikit-learn's LogisticRegression, C = C). A label absent from `labels` is never predicted."""
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=C, max_iter=2000, random_state=seed, class_weight="balanced")
    model.fit(vectorizer.transform(texts), labels)
    weights, bias = class_rows(model, n_classes)
    return LexicalView(vectorizer.get_feature_names_out().astype(str), vectorizer.idf_.astype(np.float32),
                       weights, bias)


def readable(value: object, encoding: str = "utf-8") -> str | None:
    """A text (str, or bytes in `encoding`) as the view reads it: cleaned as the embedding jobs clean texts
    (udfs.texts.clean_text); None when there is none or it cannot be read (such a row is scored by its
    embedding alone)."""
    if not isinstance(value, (str, bytes, bytearray)):  # None, or pandas' NaN for a missing one
        return None
    try:
        return text_cleaning.clean_text(value, text_cleaning.TextModelSpec().max_chars, encoding)[0] or None
    except RowError:
        return None
