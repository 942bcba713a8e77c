"""Self-training: a head refitted on the table's own most confident predictions, round after round."""
from __future__ import annotations

import logging

import numpy as np

from jobs.labelling.examples import Examples
from jobs.labelling.methods import FitOptions
from udfs import heads, texts
from udfs.heads import Head
from udfs.status import RowError

log = logging.getLogger(__name__)


def self_train(sample: np.ndarray, cfg: FitOptions, head: Head, ex: Examples, stats: dict[str, float]) -> Head:
    """Rounds of: label `sample` ([m, d] embeddings of the table's rows, corpus_sample or text_sample), keep
    each label's most confident share, refit a logistic head on those (plus the real examples, when
    `ex.vectors` holds them in the same space). Transductive: it uses the table, never the gold
    (Yarowsky-style self-training; the head is heads.fit_logreg)."""
    n = len(head.labels)
    if not len(sample):
        log.warning("self-training skipped: the table has no rows to learn from")
        return head
    for round_ in range(cfg.self_training):
        scores = head.scores(sample)
        predicted, confidence = scores.argmax(axis=1), scores.max(axis=1)
        keep = np.zeros(len(sample), dtype=bool)
        for label in range(n):
            rows = np.flatnonzero(predicted == label)
            top = rows[np.argsort(-confidence[rows], kind="stable")[: max(1, int(len(rows) * cfg.self_training_fraction))]]
            keep[top] = True
        x, y = sample[keep], predicted[keep]
        if ex.vectors is not None and len(ex.labels):
            x, y = np.vstack([x, ex.vectors]), np.concatenate([y, ex.labels])
        weights, bias = heads.fit_logreg(x, y, n, cfg.logreg_c, cfg.seed)
        log.info("self-training round %d: %d pseudo-labelled rows", round_ + 1, int(keep.sum()))
        head = Head(f"{head.method.split('+')[0]}+self-training", head.labels, weights, bias=bias,
                    embedding_model=head.embedding_model,
                    params={**head.params, "self_training": cfg.self_training,
                            "self_training_fraction": cfg.self_training_fraction,
                            "self_training_rows": int(len(sample))})
    stats["self_training_rows"] = int(len(sample))
    return head


def corpus_sample(embedded, limit: int, seed: int) -> np.ndarray:
    """[<= limit, d] embeddings of `embedded` (DataFrame with an embedding column), drawn uniformly with
    `seed`; never the whole big table."""
    from pyspark.sql import functions as F

    rows = embedded.select("embedding").orderBy(F.rand(seed)).limit(limit).collect()
    return np.array([r[0] for r in rows], dtype=np.float32)


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
