"""The assign-labels step: a head (loaded, or fitted and saved) scores every row of an embeddings table —
or, for a fine-tuned encoder, every text — into the labels table. `sparkamp.assign_labels` and the job call it."""
from __future__ import annotations

import tempfile
from dataclasses import dataclass

from jobs.core.config import require_positive
from jobs.labelling import fitting
from jobs.labelling.fitting import LabelRequest
from jobs.tables import contracts
from udfs.embed_udfs import TextJobOptions
from udfs.heads import Head
from udfs.label_udfs import ScoreOptions, embedding_scorer, text_scorer


@dataclass(frozen=True)
class ScoringOptions:
    """How rows are scored; the names are assign-labels' config keys."""

    top_k: int = 1                  # labels written per item
    min_score: float = -1.0         # an item whose best score is below it gets one row `unknown`; -1 = off
    batch_size: int = 8             # setfit: texts per model call
    partitions: int = 0             # Spark partitions scored in; 0 = 2 x the cluster's cores
    encoding: str = "utf-8"         # co-training: texts given as bytes are decoded with it

    def check(self) -> None:
        require_positive(self, "top_k", "batch_size")


def assign_labels(source, model: str, request: LabelRequest, *, head: str = "", head_output: str = "",
                  scoring: ScoringOptions = ScoringOptions(), stats: dict[str, float] | None = None):
    """The labels table (contracts.LABELS) of every row of `source`: an embeddings table's rows (id,
    embedding, status, error) of `model`, or — for setfit or a saved setfit head — text items (id, source,
    text[, status, error]). `top_k` rows per scored item (rank 1 = best; score: cosine for zero-shot,
    zmap, wmap and centroid, a probability for logreg and setfit), one row labelled `unknown` below
    `min_score`, one row with its status for an item that is not scored. The head is the one saved at
    `head`, or fitted for `request` and saved at `head_output` (a temporary folder when ""). Lazy once
    the head is fitted. ConfigError naming the key when the inputs cannot serve the method."""
    stats = {} if stats is None else stats
    scoring.check()
    if head:
        folder = fitting.local_head(head)
        fitted = fitting.load_head(folder, model)
    else:
        folder = head_output or tempfile.mkdtemp(prefix="sparkamp-head-")
        fitted = fitting.fit_head(request, model, source, folder, stats)
        folder = fitting.local_head(folder)
    stats["labels"] = len(fitted.labels)
    return score(source, fitted, folder, scoring)


def score(source, head: Head, folder: str, opts: ScoringOptions):
    """Every row of `source` scored by `head` (saved in the local `folder`) on the workers: the labels table.
    A co-trained head reads `source`'s text column too (read_source joins it)."""
    spark = source.sparkSession
    shared = spark.sparkContext.broadcast(head)
    min_score = opts.min_score if opts.min_score > -1 else None
    if head.params.get("encoder"):
        spec = fitting.encoder_spec(folder, head)
        scorer = text_scorer(shared, spec, TextJobOptions(opts.batch_size),
                             ScoreOptions(opts.top_k, min_score, head.method))
    else:
        scorer = embedding_scorer(shared, ScoreOptions(opts.top_k, min_score, head.method, encoding=opts.encoding))
    partitions = opts.partitions or 2 * spark.sparkContext.defaultParallelism
    return source.repartition(partitions).mapInPandas(scorer, contracts.LABELS.schema)
