"""Assign labels: zero-shot, Zmap, Wmap, logistic, centroid or SetFit heads over embeddings or texts."""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

if __package__ in (None, ""):  # `spark-submit jobs/assign_labels.py` without the zip: the checkout on the path
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from jobs import cli  # noqa: E402
from jobs.core.config import ConfigError, JobConfig, key, require_non_negative  # noqa: E402
from jobs.core.paths import check_input_exists, check_output_not_input  # noqa: E402
from jobs.core.summary import JobFailed, RunSummary  # noqa: E402
from jobs.embedding import items  # noqa: E402
from jobs.labelling import fitting, methods, scoring, sets  # noqa: E402
from jobs.labelling.examples import ExampleOptions  # noqa: E402
from jobs.tables import contracts, ids, inputs, publish  # noqa: E402
from udfs import heads, texts  # noqa: E402
from udfs.label_udfs import UNKNOWN  # noqa: E402

NAME = "assign-labels"
PLAN = ("read the label set and examples → fit the head on the driver (or load --head) → save it → "
        "broadcast → score every row of the embeddings (or texts) table → stage, count, publish")
FIT_KEYS = tuple(methods.FitOptions.__dataclass_fields__)


@dataclass(frozen=True)
class Config(JobConfig):
    default_output: ClassVar[str] = "labels"
    embeddings: str = key("", "the embeddings table to label (not needed by setfit)", flag="--embeddings")
    texts: str = key("", "setfit: the texts to label; co_training: the texts the embeddings were made from, "
                     "joined to them by id (a path or table with id and text columns)", flag="--texts")
    labels: str = key("", "label set YAML: labels with name, description, keywords, examples; "
                      "templates. Optional when examples name the labels", flag="--labels")
    method: Literal["zero-shot", "zmap", "wmap", "logreg", "centroid", "setfit"] = key(
        "zero-shot", "how labels are scored", flag="--method")
    examples: str = key("", "labelled examples: a table with label and id (joined to the embeddings) "
                        "or text; or a folder with one sub-folder of images per label", flag="--examples")
    examples_per_class: int = key(0, "use this many examples per label, drawn with `seed`; 0 = all")
    seed: int = key(0, "seed for drawing examples, pairs and self-training")
    head: str = key("", "score with this saved head instead of fitting one", flag="--head")
    head_output: str = key("", "where the fitted head is saved; empty = warehouse/label_heads/<method>-<run>")
    top_k: int = key(1, "labels written per item", flag="--top-k")
    min_score: float = key(-1.0, "an item whose best score is below this gets one row labelled `unknown` "
                           "(cosine for zero-shot/zmap/wmap/centroid, probability for logreg/setfit); "
                           "-1 = off")
    id_column: str = key("id", "examples and texts: the id column")
    text_column: str = key("text", "examples and texts: the text column")
    label_column: str = key("label", "examples: the label column")
    encoding: str = inputs.encoding_key("examples and texts files (CSV, JSON Lines)")
    delimiter: str = inputs.delimiter_key()
    model_path: str = key("", "the table's Sentence-Transformers directory when it is not packaged")
    vectors_path: str = key("", "word-vectors tables: the vectors file they were embedded with")
    word_vectors: str = key("", "zmap: word2vec/GloVe file of the target space; empty = packaged GloVe 6B 50d")
    vocab_size: int = key(20_000, "zmap: the most frequent words the map is fitted on")
    zmap_alpha: float = key(methods.FitOptions.zmap_alpha, "zmap: ridge strength")
    wmap_lambda: float = key(1.0, "wmap: pull towards the identity (large = the input map unchanged)")
    wmap_base: Literal["zmap", "none"] = key("zmap", "wmap: fitted after Zmap, or on the raw embeddings")
    logreg_c: float = key(1.0, "logreg/setfit/self-training: inverse regularisation strength")
    prior_weight: float = key(1.0, "centroid: weight of the label-text embedding added to each centroid; "
                              "setfit: each label's text joins its examples, weighing this × half their "
                              "median count per label; 0 = off")
    self_training: int = key(0, "rounds of self-training on the table's own confident predictions "
                             "(transductive; no labels needed); 0 = off")
    self_training_fraction: float = key(methods.FitOptions.self_training_fraction,
                                        "self-training: most confident share of each label kept")
    self_training_sample: int = key(20_000, "self-training: rows of the table brought to the driver (setfit: "
                                    "texts embedded there with the fine-tuned encoder, ~60/s on 2 cores)")
    label_spreading: int = key(0, "self-training: before each round, spread the head's labels over the "
                               "sample's k-nearest-neighbour graph with this many neighbours (label spreading, "
                               "Zhou et al. 2004) and keep the rows the spread labels are surest of; 0 = off")
    label_spreading_alpha: float = key(0.8, "label spreading: the share of a row's label taken from its "
                                       "neighbours, in (0, 1)")
    co_training: Literal["none", "tfidf"] = key(
        "none", "self-training: tfidf = co-training with a TF-IDF view of each row's text (key texts) beside "
        "the embeddings; each round refits both views on the pseudo-labels of their averaged probabilities, "
        "and rows are scored by that average (Blum & Mitchell 1998; needs 3+ self_training rounds to help)")
    setfit_pairs: int = key(20, "setfit: contrastive pairs drawn per example and kind (same/other), "
                            "with setfit_sampling random")
    setfit_sampling: Literal["random", "oversampling"] = key(
        methods.FitOptions.setfit_sampling, "setfit: random = setfit_pairs pairs of each kind per example "
        "(the SetFit paper's num_iterations); oversampling = every pair of examples once, the rarer kind "
        "repeated up to the other's count (the setfit library's default since 1.0; grows with the square "
        "of the examples)")
    setfit_epochs: int = key(1, "setfit: passes over the pairs")
    setfit_max_seconds: float = key(600.0, "setfit: stop fine-tuning after this long")
    batch_size: int = key(8, "setfit: texts per model call while scoring")

    def validate(self) -> None:
        super().validate()
        if self.head:
            check_input_exists("head", self.head, globs=False)
        if self.scores_texts:
            self._require_input("texts", "method setfit and a saved setfit head (they embed the texts with the "
                                "fine-tuned encoder)")
        else:
            self._require_input("embeddings", f"method {self.method}")
            if self.reads_texts:
                self._require_input("texts", "co_training tfidf and a co-trained head: the texts the embeddings "
                                    "were made from (id and text columns), joined by id")
        for name in ("labels", "examples"):
            if getattr(self, name):
                check_input_exists(name, getattr(self, name), globs=name == "examples")  # YAML: Python reads it
        self.scoring.check()
        require_non_negative(self, "examples_per_class")
        self.fit.check()
        inputs.check_text_keys(self.encoding, self.delimiter)
        if self.method == "setfit" and self.co_training != "none" and not self.head:
            raise ConfigError(methods.SETFIT_CO_TRAINING)
        if not self.head:
            sets.check_label_inputs(self.method, sets.read_label_set(self.labels), bool(self.examples))

    def _require_input(self, name: str, needed_by: str) -> None:
        """ConfigError unless input key `name` is set, exists and is not the output."""
        if not getattr(self, name):
            raise ConfigError(f"key '{name}' is required by {needed_by}")
        check_input_exists(name, getattr(self, name))
        check_output_not_input(getattr(self, name), self.output)

    @property
    def scores_texts(self) -> bool:
        """setfit, or a saved setfit head: the texts are embedded with its fine-tuned encoder."""
        if not self.head:
            return self.method == "setfit"
        try:
            return bool(heads.read_manifest(fitting.local_head(self.head))["params"].get("encoder"))
        except ValueError as exc:
            raise ConfigError(f"key 'head': {exc}") from None

    @property
    def reads_texts(self) -> bool:
        """co_training tfidf, or a saved co-trained head: each embeddings row's text is joined by id."""
        if not self.head:
            return self.co_training != "none"
        try:
            return heads.read_manifest(fitting.local_head(self.head))["params"].get("co_training") == "tfidf"
        except ValueError as exc:
            raise ConfigError(f"key 'head': {exc}") from None

    @property
    def fit(self) -> methods.FitOptions:
        return methods.FitOptions(**{name: getattr(self, name) for name in FIT_KEYS})

    @property
    def scoring(self) -> scoring.ScoringOptions:
        return scoring.ScoringOptions(self.top_k, self.min_score, self.batch_size)

    def request(self) -> fitting.LabelRequest:
        columns = ExampleOptions(self.label_column, self.text_column, self.id_column, self.examples_per_class,
                                 self.seed, self.encoding, self.delimiter)
        return fitting.LabelRequest(self.method, sets.read_label_set(self.labels), self.examples, self.fit, columns)


def read_source(spark, cfg: Config) -> tuple["object", str]:
    """What gets labelled and its model: every row of the embeddings table (bad rows too), or the text
    items (id, source, text, status, error) a fine-tuned encoder embeds."""
    if cfg.scores_texts:
        columns = items.TextColumns(cfg.id_column, cfg.text_column, [], cfg.encoding, cfg.delimiter, key="texts")
        found = items.read_items(spark, cfg.texts, inputs.detect_format(cfg.texts, "auto"), columns)
        return ids.mark(found, cfg.id_column), Path(cfg.model_path).name if cfg.model_path else \
            texts.DEFAULT_TEXT_MODEL
    table = contracts.read_embeddings(spark, cfg.embeddings, contracts.EmbeddingsCheck(
        purpose="to label", hint="label one model at a time"))
    rows = table.rows.select("id", "embedding", "status", "error")
    if cfg.reads_texts:
        rows = rows.join(read_texts(spark, cfg), "id", "left")
    return rows, table.model


def read_texts(spark, cfg: Config):
    """(id, text) of the `texts` rows read well, one per id (ids.mark keeps an id's first row): what a
    left join adds to each embeddings row, so that it neither drops nor repeats any."""
    from pyspark.sql import functions as F

    columns = items.TextColumns(cfg.id_column, cfg.text_column, [], cfg.encoding, cfg.delimiter, key="texts")
    fmt = inputs.detect_format(cfg.texts, "auto")
    if fmt == "text-dir":
        raise ConfigError(f"key 'texts': co_training reads a table or file with id and text columns; "
                          f"{cfg.texts!r} is a folder of .txt files")
    found = ids.mark(items.read_items(spark, cfg.texts, fmt, columns), cfg.id_column)
    return found.filter(F.col("status").isNull()).select("id", "text")


def run(spark, cfg: Config, summary: RunSummary) -> None:
    publish.prepare_output(spark, cfg.output, cfg.mode)
    source, model = read_source(spark, cfg)
    with summary.timed("count inputs"):
        summary.rows_in = source.count()
    folder = cfg.head or cfg.head_output or os.path.join(cfg.warehouse, "label_heads", f"{cfg.method}-{summary.run_id}")
    options = scoring.ScoringOptions(cfg.top_k, cfg.min_score, cfg.batch_size,
                                     max(1, min(summary.rows_in, 2 * spark.sparkContext.defaultParallelism)),
                                     cfg.encoding)
    with summary.timed("fit head"):
        scored = scoring.assign_labels(source, model, cfg.request(), head=cfg.head, head_output=folder,
                                       scoring=options, stats=summary.stats)
    with summary.timed("score + write"):
        publish.publish(spark, scored, cfg.output, cfg.mode, summary.run_id,
                        verify=lambda staged: _check_rows(staged, summary))
    summary.outputs += [cfg.output, folder]


def _check_rows(staged, summary: RunSummary) -> None:
    """Counts what was written, item by item: an item's first row (rank 1, or its one row without a
    rank), by status (`unknown` for a low-confidence item); refuses to publish when items are lost.
    Counting rows, not distinct ids, keeps rows with a missing or repeated id counted as themselves."""
    from pyspark.sql import functions as F

    first = staged.filter(F.col("rank").isNull() | (F.col("rank") == 1))
    kind = F.when(F.col("label") == UNKNOWN, UNKNOWN).otherwise(F.col("status")).alias("kind")
    summary.statuses = {row["kind"]: int(row["count"]) for row in first.groupBy(kind).count().collect()}
    if summary.rows_out != summary.rows_in:
        raise JobFailed(f"{summary.rows_in} items in but {summary.rows_out} labelled; nothing was published")


if __name__ == "__main__":
    sys.exit(cli.main([NAME, *sys.argv[1:]]))
