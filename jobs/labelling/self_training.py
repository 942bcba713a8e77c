"""Self-training: a head refitted on the table's own most confident predictions, round after round, optionally
smoothed by label spreading over a k-nearest-neighbour graph of the table's rows."""
from __future__ import annotations

import logging
import warnings

import numpy as np

from jobs.labelling.co_training import TextView
from jobs.labelling.examples import Examples
from jobs.labelling.methods import FitOptions
from udfs import heads, lexical, texts
from udfs.heads import Head
from udfs.status import RowError

log = logging.getLogger(__name__)


def self_train(sample: np.ndarray, cfg: FitOptions, head: Head, ex: Examples, stats: dict[str, float],
               sample_texts: list[str | None] | None = None) -> Head:
    """Rounds of: label `sample` ([m, d] embeddings of the table's rows, corpus_sample or text_sample), with
    `cfg.label_spreading` > 0 spread those labels over the sample's k-NN graph (`spread`), keep each label's
    most confident share, refit a logistic head on those (plus the real examples, when `ex.vectors` holds
    them in the same space). Transductive: it uses the table, never the gold (Yarowsky-style
    self-training, Yarowsky 1995; the head is heads.fit_logreg). A round whose pseudo-labels (with the
    examples) hold one label only is not fitted: self-training stops there, with a warning, and
    `stats["self_training_rounds"]` says how many rounds were fitted.

    With `cfg.co_training` "tfidf" (`sample_texts` [m]: each sample row's text, None where it has none),
    each round also refits a TF-IDF view of the texts (udfs.lexical) on the same pseudo-labels, and the
    next round labels with the mean of both views' probabilities: co-training (Blum & Mitchell 1998) with
    the views agreeing through averaged probabilities. The head returned carries the view; it scores the
    same mean. A sample without two texts sharing a term gets no view (a warning)."""
    n = len(head.labels)
    if not len(sample):
        log.warning("self-training skipped: the table has no rows to learn from")
        return head
    view = TextView.of(sample_texts, ex, cfg.seed) if cfg.co_training == "tfidf" else None
    rounds, words = 0, None
    for round_ in range(cfg.self_training):
        scores = head.scores(sample, sample_texts)
        if cfg.label_spreading:
            scores = spread(sample, scores.argmax(axis=1), n, cfg.label_spreading, cfg.label_spreading_alpha)
        predicted, confidence = scores.argmax(axis=1), scores.max(axis=1)
        keep = np.zeros(len(sample), dtype=bool)
        for label in range(n):
            rows = np.flatnonzero(predicted == label)
            top = rows[np.argsort(-confidence[rows], kind="stable")[: max(1, int(len(rows) * cfg.self_training_fraction))]]
            keep[top] = True
        x, y = sample[keep], predicted[keep]
        if ex.vectors is not None and len(ex.labels):
            x, y = np.vstack([x, ex.vectors]), np.concatenate([y, ex.labels])
        if len(np.unique(y)) < 2:  # nothing to tell apart: keep the head of the round before
            log.warning("self-training stopped before round %d: its pseudo-labels (%d rows) are all '%s' "
                        "(label spreading with many neighbours or label_spreading_alpha near 1 can do this); "
                        "the head of the round before is kept", round_ + 1, len(y), head.labels[int(y[0])])
            break
        weights, bias = heads.fit_logreg(x, y, n, cfg.logreg_c, cfg.seed)
        if view is not None:
            words = view.fit(keep, predicted, n)
        log.info("self-training round %d: %d pseudo-labelled rows", round_ + 1, int(keep.sum()))
        kind = "co-training" if words is not None else "self-training"
        head = Head(f"{head.method.split('+')[0]}+{kind}", head.labels, weights, bias=bias,
                    embedding_model=head.embedding_model,
                    params={**head.params, "self_training": cfg.self_training,
                            "self_training_fraction": cfg.self_training_fraction,
                            "self_training_rows": int(len(sample)), **spreading_params(cfg),
                            **({"co_training": "tfidf", "tfidf_terms": len(words.terms)} if words else {})},
                    lexical=words)
        rounds += 1
    stats["self_training_rows"] = int(len(sample))
    stats["self_training_rounds"] = rounds
    if cfg.co_training == "tfidf":
        stats["co_training_terms"] = len(words.terms) if words is not None else 0
    return head


def spread(sample: np.ndarray, labels: np.ndarray, n_classes: int, neighbours: int, alpha: float) -> np.ndarray:
    """[m, n_classes] label distributions: `labels` (int [m], a head's predictions for the [m, d] `sample`)
    spread over the sample's `neighbours`-nearest-neighbour graph (Euclidean on the normalised rows, i.e.
    cosine), each row keeping `alpha` of its neighbours' labels and 1 - alpha of its own: label spreading,
    Zhou et al. 2004, "Learning with local and global consistency", by scikit-learn's LabelSpreading. A row
    whose neighbours disagree with its predicted label loses confidence or changes label; a label nobody
    predicted keeps probability 0. Brute-force neighbours: m² distances, ~10 s for m = 20,000 on 2 cores."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.semi_supervised import LabelSpreading

    out = np.zeros((len(sample), n_classes))
    if len(sample) < 2:  # no neighbours: the labels as they are
        out[np.arange(len(sample)), labels] = 1
        return out
    model = LabelSpreading(kernel="knn", n_neighbors=min(neighbours, len(sample) - 1), alpha=alpha, max_iter=100)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # 100 iterations settle the argmax long before tol
        model.fit(heads.normalise(sample), labels)
    out[:, model.classes_] = model.label_distributions_
    return out


def spreading_params(cfg: FitOptions) -> dict:
    """What a head's manifest records of label spreading (nothing when it is off)."""
    return {"label_spreading": cfg.label_spreading, "label_spreading_alpha": cfg.label_spreading_alpha} \
        if cfg.label_spreading else {}


def corpus_sample(embedded, limit: int, seed: int) -> np.ndarray:
    """[<= limit, d] embeddings of `embedded` (DataFrame with an embedding column), drawn uniformly with
    `seed`; never the whole big table."""
    from pyspark.sql import functions as F

    rows = embedded.select("embedding").orderBy(F.rand(seed)).limit(limit).collect()
    return np.array([r[0] for r in rows], dtype=np.float32)


def corpus_text_sample(rows, limit: int, seed: int, encoding: str = "utf-8") -> tuple[np.ndarray, list]:
    """([<= limit, d] embeddings, their texts: cleaned as the scoring UDF cleans them, None where a row has
    none or it cannot be read) of `rows` (DataFrame with embedding and text columns: the table's ok rows
    joined to their texts), drawn uniformly with `seed`; never the whole big table."""
    from pyspark.sql import functions as F

    drawn = rows.select("embedding", "text").orderBy(F.rand(seed)).limit(limit).collect()
    return np.array([r[0] for r in drawn], dtype=np.float32).reshape(len(drawn), -1), \
        [lexical.readable(r[1], encoding) for r in drawn]


def text_sample(items, limit: int, seed: int, encoding: str = "utf-8") -> list[str]:
    """<= limit texts of `items` (DataFrame with text and status columns, as assign-labels reads them:
    status null on rows read well), drawn uniformly with `seed` and cleaned as the scoring UDF cleans them
    (texts.clean_text; empty ones left out): what a fine-tuned encoder embeds on the driver for
    self-training."""
    from pyspark.sql import functions as F

    rows = items.filter(F.col("status").isNull() & F.col("text").isNotNull()).select("text") \
        .orderBy(F.rand(seed)).limit(limit).collect()
    cleaned = []
    for (value,) in rows:
        try:
            cleaned.append(texts.clean_text(value, texts.TextModelSpec().max_chars, encoding)[0])
        except RowError:
            continue
    return cleaned
