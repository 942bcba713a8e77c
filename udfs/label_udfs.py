"""mapInPandas shells around label heads: embeddings (or texts, for a fine-tuned encoder) in, labels rows out."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np
import pandas as pd

from udfs import lexical, texts
from udfs.batches import rebatch
from udfs.embed_udfs import TextJobOptions, embed_text_block, with_preset_rows, worker_text_model
from udfs.heads import Head, top_k
from udfs.status import OK

# the labels table's columns, in order (jobs/tables/contracts.py holds the table's contract)
LABEL_COLUMNS = ["id", "label", "score", "rank", "method", "status", "error"]
UNKNOWN = "unknown"
Frames = Iterator[pd.DataFrame]


@dataclass(frozen=True)
class ScoreOptions:
    top_k: int = 1
    min_score: float | None = None  # best score below it → one row labelled `unknown`
    method: str = ""                # goes into the `method` column
    block_rows: int = 4096          # embeddings scored per block
    encoding: str = "utf-8"         # texts given as bytes (a co-trained head's TF-IDF view)


def label_rows(ids: np.ndarray, vectors: list, statuses: list, errors: list, head: Head,
               opts: ScoreOptions, texts_: list | None = None) -> pd.DataFrame:
    """One block of items → labels rows: `top_k` rows per scored item, one `unknown` row for a
    low-confidence item, one row with its status and error (label null) for an item not scored.
    `texts_` [n] (str, bytes in opts.encoding, or None): each item's text, for a co-trained head's TF-IDF
    view; a row without a readable one is scored by its embedding alone."""
    ok = [i for i, s in enumerate(statuses) if s == OK and vectors[i] is not None]
    out = {name: [] for name in LABEL_COLUMNS}

    def add(i: int, label, score, rank, status, error) -> None:
        for name, value in zip(LABEL_COLUMNS, (ids[i], label, score, rank, opts.method, status, error)):
            out[name].append(value)

    best: dict[int, tuple] = {}
    if ok:
        words = [lexical.readable(texts_[i], opts.encoding) for i in ok] \
            if texts_ is not None and head.lexical is not None else None
        order, scores = top_k(head.scores(np.stack([np.asarray(vectors[i], np.float32) for i in ok]), words),
                              opts.top_k)
        best = {i: (order[row], scores[row]) for row, i in enumerate(ok)}
    for i, status in enumerate(statuses):
        if i not in best:
            add(i, None, None, None, status if status != OK else "no_embedding",
                errors[i] if status != OK else "the row has status ok but no embedding")
            continue
        labels, scores = best[i]
        if opts.min_score is not None and scores[0] < opts.min_score:
            add(i, UNKNOWN, float(scores[0]), 1, OK, None)
            continue
        for rank, (label, score) in enumerate(zip(labels, scores), start=1):
            add(i, head.labels[label], float(score), rank, OK, None)
    frame = pd.DataFrame(out, columns=LABEL_COLUMNS)
    frame["rank"] = frame["rank"].astype("Int32")
    return frame


def embedding_scorer(head: Any, opts: ScoreOptions) -> Callable[[Frames], Frames]:
    """A mapInPandas function: blocks of (id, embedding, status, error[, text]) → labels rows.
    `head` is a Spark broadcast of a Head (or a Head); `text` feeds a co-trained head's TF-IDF view."""
    def score_partition(blocks: Frames) -> Frames:
        h = head.value if hasattr(head, "value") else head
        for block in rebatch(blocks, opts.block_rows):
            yield label_rows(block["id"].to_numpy(), block["embedding"].tolist(), block["status"].tolist(),
                             block["error"].tolist(), h, opts,
                             block["text"].tolist() if "text" in block else None)
    return score_partition


def text_scorer(head: Any, spec: texts.TextModelSpec, text_opts: TextJobOptions,
                opts: ScoreOptions) -> Callable[[Frames], Frames]:
    """A mapInPandas function: blocks of (id, source, text) → embedded with `spec` (a fine-tuned
    encoder, loaded once per worker) → labels rows. Rows that cannot be embedded keep their status."""
    def score_partition(blocks: Frames) -> Frames:
        h = head.value if hasattr(head, "value") else head
        model = worker_text_model(spec, text_opts)
        for block in rebatch(blocks, text_opts.block_rows):
            rows = with_preset_rows(block, model.label,
                                    lambda todo: embed_text_block(todo, model, text_opts, {}))
            yield label_rows(rows["id"].to_numpy(), rows["embedding"].tolist(), rows["status"].tolist(),
                             rows["error"].tolist(), h, opts)
    return score_partition
