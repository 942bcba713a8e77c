"""sparkamp as DataFrame functions: semantic image search and zero/few-shot text labelling in your SparkSession.

Every function takes DataFrames of the caller's session and returns a DataFrame (lazy, except where a
check or a fit has to look at the data first) or, for build_index, an IndexInfo. Nothing here creates,
stops or reconfigures a session, or configures logging; nothing is written except an index at the path
given to build_index, a fitted label head at `head_output`, and temporary files that are removed. The
`sparkamp <job>` commands call these same functions between reading and publishing tables. Output
tables follow the contracts of DESIGN.md; a row that cannot be processed is a row with a `status` and
an `error`, never a crash. A bad argument raises ConfigError (a ValueError) naming it.

    embed_images(df, path_col="path")        → embeddings: id, source, content_hash, model, embedding, status, error
    embed_texts(df, text_col="text")         → embeddings
    build_index(embeddings, "/tmp/idx")      → IndexInfo (written: a FAISS index directory)
    search(queries, "/tmp/idx", k=10)        → neighbours: query_id, rank, neighbor_id, score, status, error
    dedup(embeddings, threshold=0.9)         → duplicate groups: group_id, id, score_to_representative
    unique(embeddings)                       → uniqueness: id, nearest_id, nearest_score, rank, status, error
    assign_labels(embeddings, "labels.yaml") → labels: id, label, score, rank, method, status, error
    evaluate_retrieval(neighbours, gold)     → metrics: job, metric, k, class, predicted, value, queries
    evaluate_classification(labels, gold)    → metrics
    df.withColumn("e", image_embedding("path")) / text_embedding("text")   (struct: embedding, status, error)

Example (see examples/notebook.py):

    spark = SparkSession.builder.getOrCreate()
    emb = sparkamp.embed_images(spark.createDataFrame([("a", "/data/a.png")], "id string, path string"),
                                path_col="path")
    info = sparkamp.build_index(emb, "/tmp/index")
    sparkamp.search(emb, "/tmp/index", k=5, exclude_self=True).show()
"""
from __future__ import annotations

import dataclasses
from typing import Any

from jobs.core.config import ConfigError
from jobs.embedding import steps, whitening
from jobs.evaluation import classification, retrieval
from jobs.indexing import build, groups, neighbours, ranking, shard_search
from jobs.indexing.options import IndexInfo, IndexOptions
from jobs.labelling import fitting, methods, scoring, sets
from jobs.labelling.examples import ExampleOptions
from jobs.tables import contracts, labelled, scratch
from jobs.tables.contracts import EmbeddingsCheck
from udfs import cnn, texts
from udfs.reranking import Rerank
from udfs.columns import image_embedding, text_embedding
from udfs.embed_udfs import ImageJobOptions, TextJobOptions
from udfs.label_sets import LabelSet, parse_label_set

__all__ = ["embed_images", "embed_texts", "build_index", "search", "dedup", "unique", "assign_labels",
           "evaluate_retrieval", "evaluate_classification", "image_embedding", "text_embedding", "IndexInfo",
           "fit_whitening", "whiten", "Rerank",
           "ConfigError"]
_TABLE = "the embeddings DataFrame"


def embed_images(df, *, path_col: str | None = None, content_col: str | None = None, id_col: str = "id",
                 source_col: str | None = None, model: str = cnn.DEFAULT_IMAGE_MODEL, precision: str = "fp32",
                 batch_size: int = 4, weights_path: str = "", layer: str = "", image_size: int = 0,
                 max_pixels: int = 64_000_000, max_bytes: int = 64 * 2**20, num_partitions: int = 0,
                 pooling: str = "avg", gem_p: float = 3.0, flip: bool = False, concat_layer: str = "",
                 whitening: str = "", engine: str = "auto", engine_cache: str = "", scales=(1.0,)):
    """The embeddings table of `df`'s images, one row per row: files at `path_col` (local paths or any
    pyarrow URI) or bytes in `content_col`; `model` efficientnet-lite0/1/2 (1280-d) or a torchvision
    architecture with `weights_path`; vectors L2-normalised float32: `pooling` avg or gem (`gem_p`), `flip`
    averaging with the mirror image, `concat_layer` a block concatenated with the last, `scales` factors of
    a multi-scale descriptor (e.g. (1, 1.414); torch only) (udfs.pooling),
    `whitening` a folder saved by `fit_whitening`, applied after pooling. A missing, unreadable, oversized
    (`max_bytes`, `max_pixels`) or undecodable image, and a null or repeated id, is a row with its status.
    A `status`/`error` column in `df` marks rows a reader already found bad (they keep it). `engine`:
    torch, onnx (ONNX Runtime), openvino, or auto (the fastest measured: udfs/engines.py AUTO); an engine
    other than torch runs the model's ONNX export, made on this driver at first use and kept in
    `engine_cache` (empty = ~/.cache/sparkamp/engines). Lazy, once the export is made.

    Example: `embed_images(spark.createDataFrame(rows, "id string, path string"), path_col="path")`"""
    spec = cnn.ImageModelSpec(model, weights_path, layer, image_size, False, precision, engine=engine,
                              engine_cache=engine_cache, pooling=pooling, gem_p=gem_p, flip=flip,
                              concat_layer=concat_layer, whitening=whitening, scales=tuple(scales))
    options = steps.ImageOptions(spec, ImageJobOptions(batch_size, max_pixels, max_bytes), num_partitions)
    columns = steps.ItemColumns(id_col, source_col or "", path_col or "", content_col or "")
    return steps.embed_images(df, columns=columns, options=options)


def fit_whitening(embeddings_df, folder: str, *, whiten_dim: int = 0, whiten_shrinkage: float = 0.0) -> dict:
    """Learns a PCA whitening (Jégou & Chum 2012) of an embeddings DataFrame's ok vectors in Spark (n, Σx,
    Σxxᵀ summed per partition and tree-reduced; the eigendecomposition on the driver) and saves it to the
    local `folder` with a manifest; returns {"input_dim", "output_dim", "n"}. ConfigError on bad options
    or fewer than 2 vectors. Apply it with `whiten` (a table) or `embed_images(..., whitening=folder)`.

    Example: `fit_whitening(emb, "/tmp/whitening", whiten_dim=256, whiten_shrinkage=0.1)`"""
    table = contracts.check_embeddings(embeddings_df, EmbeddingsCheck(purpose="to whiten"), _TABLE)
    fitted = whitening.fit_whitening(table, folder, whitening.WhiteningOptions(whiten_dim, whiten_shrinkage))
    return {"input_dim": fitted.dims[0], "output_dim": fitted.dims[1], "n": table.n_ok}


def whiten(embeddings_df, folder: str):
    """The embeddings DataFrame with every ok vector whitened by the whitening saved at `folder` (the
    function `embed_images(..., whitening=folder)` applies) and `model` `<model>+whiten:<folder>`, so
    image queries are embedded alike. Lazy.

    Example: `whiten(emb, "/tmp/whitening")`"""
    table = contracts.check_embeddings(embeddings_df, EmbeddingsCheck(purpose="to whiten"), _TABLE)
    return whitening.whiten_rows(table.rows, folder, whitening.whitened_label(table.model, folder))


def embed_texts(df, *, text_col: str = "text", path_col: str | None = None, id_col: str = "id",
                source_col: str | None = None, model: str = texts.DEFAULT_TEXT_MODEL, precision: str = "fp32",
                batch_size: int = 8, max_chars: int = 100_000, model_path: str = "", vectors_path: str = "",
                encoding: str = "utf-8", num_partitions: int = 0, engine: str = "auto", engine_cache: str = ""):
    """The embeddings table of `df`'s texts, one row per row: the strings (or bytes, decoded with
    `encoding`) of `text_col`, or files read whole at `path_col`; `model` all-MiniLM-L6-v2 (384-d), a
    Sentence-Transformers directory at `model_path`, or `word-vectors` (GloVe 6B 50d, or `vectors_path`);
    cut at `max_chars`; L2-normalised. Empty, undecodable or all-unknown-word texts, and null or repeated
    ids, are rows with their status. `engine`, `engine_cache`: as `embed_images` (sentence encoders; word
    vectors run no model). Lazy, once the export is made.

    Example: `embed_texts(spark.createDataFrame(rows, "id string, text string"))`"""
    spec = texts.TextModelSpec(model, model_path, vectors_path, max_chars, precision, engine, engine_cache)
    options = steps.TextOptions(spec, TextJobOptions(batch_size, encoding=encoding), num_partitions)
    columns = steps.ItemColumns(id_col, source_col or "", path_col or "", text="" if path_col else text_col)
    return steps.embed_texts(df, columns=columns, options=options)


def build_index(embeddings_df, path: str, **options: Any) -> IndexInfo:
    """Builds a FAISS index of the embeddings table's ok rows and publishes it at `path` (a directory:
    local, hdfs://, s3a://, ...) atomically; returns its IndexInfo (model, dim, metric, factory, ntotal,
    recall_at_10 measured against exact search, nprobe, rows left out and counted by status). `options`:
    IndexOptions' fields — factory ("auto" or a faiss factory string), metric ("ip"/"l2"), memory_budget,
    merge, num_shards, train_size, seed, nprobe, target_recall, min_recall, recall_queries, ...
    Raises ConfigError (a bad option, a table it cannot index), JobFailed (recall below min_recall).

    Example: `info = build_index(emb, "/tmp/index", factory="IVF64,Flat"); info.recall_at_10`"""
    opts = _typed(IndexOptions, options)
    table = contracts.check_embeddings(embeddings_df, build.TO_INDEX, _TABLE)
    return build.build_index(table, path, opts)


def search(queries_df, index_path: str, *, k: int = 10, exclude_self: bool = False, nprobe: int = 0,
           ef_search: int = 0, batch_size: int = 4096, rerank: str | Rerank = "none", num_partitions: int = 0,
           work_dir: str | None = None):
    """The neighbours table of every row of an embeddings DataFrame of queries against the index at
    `index_path`: k rows per ok query (rank 1 = nearest; score = cosine for an `ip` index), one row with
    its status for a query that is not ok, cannot be searched (non_finite, wrong_dim, ...) or finds
    nothing. Queries must be of the index's model (ConfigError). `rerank`: a method of
    udfs.reranking.METHODS (none, average-qe, alpha-qe, diffusion) with its default settings, or a
    `Rerank(method, top, qe_top, qe_alpha, graph_k)`; the scores are then the re-ranking's.
    Lazy; each worker loads the index once. A sharded index (merge: none): the queries are written once
    beside `work_dir` (default: the session's warehouse dir), so the result is computed before it is
    returned (localCheckpoint) and the folder removed.

    Example: `search(emb, "/tmp/index", k=5, exclude_self=True, rerank="diffusion")`"""
    opts = neighbours.SearchOptions(k, exclude_self, nprobe, ef_search, batch_size, num_partitions,
                                    Rerank(rerank) if isinstance(rerank, str) else rerank)
    meta = neighbours.checked_manifest(index_path)
    table = contracts.check_embeddings(queries_df, neighbours.query_check(meta), "the queries DataFrame")
    if not shard_search.is_sharded(meta):
        return neighbours.search(table, index_path, opts)
    with scratch.folder(queries_df.sparkSession, work_dir or _work_dir(queries_df), "queries") as work:
        return neighbours.search(table, index_path, opts, work).localCheckpoint(eager=True)


def dedup(embeddings_df, *, threshold: float = 0.85, index: str | None = None, k: int = 10, nprobe: int = 0,
          batch_size: int = 4096, work_dir: str | None = None):
    """The duplicate-groups table of the embeddings table's ok rows: exact duplicates (same content_hash)
    and near ones (cosine >= `threshold` among each item's k nearest), joined into connected groups in
    Spark; each member with its cosine to the group's representative (its smallest id). Searched through
    `index`, or a temporary index built beside `work_dir` (default: the session's warehouse dir) and
    removed; the grouping's checkpoints go there too and are removed, so the result is computed before
    it is returned (localCheckpoint).

    Example: `dedup(emb, threshold=0.95).groupBy("group_id").count()`"""
    table = contracts.check_embeddings(embeddings_df, neighbours.compare_check(index or ""), _TABLE)
    opts = groups.DedupOptions(threshold, k, nprobe, batch_size)
    work = work_dir or _work_dir(embeddings_df)
    with (neighbours.index_for(table, index or "", work) as folder,
          scratch.folder(embeddings_df.sparkSession, work, "groups") as checkpoints):
        found = groups.find_duplicates(table, folder, checkpoints, opts)
        result = found.groups.localCheckpoint(eager=True)  # the groups read the checkpoints, removed next
    found.pairs.unpersist()
    return result


def unique(embeddings_df, *, index: str | None = None, k: int = 10, count_duplicates: bool = False,
           nprobe: int = 0, batch_size: int = 4096, work_dir: str | None = None):
    """The uniqueness table of the embeddings table's ok rows: each item's nearest other item (exact copies
    skipped unless `count_duplicates`) and its cosine, rank 1 = the least similar to anything else; items
    without one rank last with their status. Through `index`, or a temporary one (see `dedup`); ranked in
    Spark with checkpoints beside `work_dir`, removed before it returns, so the result is computed first
    (localCheckpoint).

    Example: `unique(emb).orderBy("rank").limit(10)`"""
    table = contracts.check_embeddings(embeddings_df, neighbours.compare_check(index or ""), _TABLE)
    opts = ranking.UniqueOptions(k, count_duplicates, nprobe, batch_size)
    work = work_dir or _work_dir(embeddings_df)
    with (neighbours.index_for(table, index or "", work) as folder,
          scratch.folder(embeddings_df.sparkSession, work, "ranks") as checkpoints):
        ranked, cached = ranking.rank_uniqueness(table, folder, checkpoints, opts)
        ranked = ranked.localCheckpoint(eager=True)  # it reads the index and the checkpoints, removed next
    for frame in cached:
        frame.unpersist()
    return ranked


def assign_labels(embeddings_df, label_set: Any, *, method: str = "zero-shot", examples: Any = None,
                  top_k: int = 1, min_score: float | None = None, head: str | None = None,
                  head_output: str | None = None, batch_size: int = 8, **options: Any):
    """The labels table of every row of an embeddings DataFrame (or, for method setfit, of a DataFrame of
    texts: id, text): `top_k` rows per ok item (score: cosine for zero-shot/zmap/wmap/centroid, a
    probability for logreg/setfit), one `unknown` row below `min_score`, one row with its status for a
    row that is not ok. `label_set`: a label-set YAML path, a LabelSet, a list of names or the YAML's
    mapping. `examples` (logreg, centroid, wmap, setfit): a DataFrame or location with label and text (or
    id) columns. The head is fitted on the driver (or loaded from `head`) and saved at `head_output` (a
    temporary folder when None). `options`: FitOptions' fields (seed, logreg_c, zmap_alpha, ...) and
    ExampleOptions' (label_column, text_column, id_column, examples_per_class). With
    `co_training="tfidf"` the embeddings DataFrame also carries each row's text (`text_column`).

    Example: `assign_labels(emb, ["sports", "food", "law"], top_k=2)`"""
    fit, columns = _typed(methods.FitOptions, options, ExampleOptions), _typed(ExampleOptions, options,
                                                                               methods.FitOptions)
    labels = _label_set(label_set)
    if not head:
        sets.check_label_inputs(method, labels, examples is not None)
    request = fitting.LabelRequest(method, labels, examples, fit, columns)
    if "embedding" in embeddings_df.columns:
        from pyspark.sql import functions as F

        table = contracts.check_embeddings(embeddings_df, EmbeddingsCheck(
            purpose="to label", hint="label one model at a time"), _TABLE)
        source, model = table.rows.select("id", "embedding", "status", "error"), table.model
        if columns.text_column in embeddings_df.columns and (fit.co_training != "none" or head):  # a TF-IDF view reads it
            words = embeddings_df.select("id", F.col(columns.text_column).alias("text")).dropDuplicates(["id"])
            source = source.join(words, "id", "left")
    else:
        source = steps.marked_items(embeddings_df, steps.ItemColumns(columns.id_column, text=columns.text_column))
        model = texts.DEFAULT_TEXT_MODEL if not fit.model_path else fit.model_path.rstrip("/").split("/")[-1]
    return scoring.assign_labels(source, model, request, head=head or "", head_output=head_output or "",
                                 scoring=scoring.ScoringOptions(top_k, -1.0 if min_score is None else min_score,
                                                                batch_size))


def evaluate_retrieval(neighbours_df, gold: Any, *, k: int = 0, id_match: str = "auto", label_column: str = "label"):
    """The metrics table of a neighbours table against `gold` (a DataFrame with id and `label_column`, a
    {id: label} dict, or a location as `sparkamp evaluate` reads it): precision@k, rank-weighted precision,
    average precision and recall, overall (class null) and per class. k = 0: the deepest rank.

    Example: `evaluate_retrieval(search(emb, idx, k=10, exclude_self=True), {"a.png": "cat", ...})`"""
    table = contracts.conform(neighbours_df, contracts.NEIGHBOURS, "neighbours", "the neighbours DataFrame")
    scores, k = retrieval.query_scores(table, _gold(table.sparkSession, gold, label_column), k, id_match)
    return retrieval.metrics_table(scores, k)


def evaluate_classification(labels_df, gold: Any, *, k: int = 0, id_match: str = "auto",
                            label_column: str = "label"):
    """The metrics table of a labels table against `gold` (as in `evaluate_retrieval`): accuracy, top-k
    accuracy (k = 0: the deepest rank), per-class precision, recall and F1, macro-F1, the confusion."""
    table = contracts.conform(labels_df, contracts.LABELS, "labels", "the labels DataFrame")
    spark = table.sparkSession
    found = classification.count_confusion(table, _gold(spark, gold, label_column), k, id_match)
    return classification.classification_table(spark, found)


# ---- arguments to typed options -------------------------------------------------------------------

def _typed(cls: type, values: dict[str, Any], *others: type):
    """`cls` of the `values` it has fields for, checked; a name no class of `cls, *others` has, or a bad
    value, is a ConfigError naming it."""
    known = {f.name for f in dataclasses.fields(cls)}
    accepted = known.union(*({f.name for f in dataclasses.fields(other)} for other in others))
    unknown = sorted(set(values) - accepted)
    if unknown:
        raise ConfigError(f"unknown option(s) {unknown}; accepted: {', '.join(sorted(accepted))}")
    options = cls(**{name: value for name, value in values.items() if name in known})
    if hasattr(options, "check"):
        options.check()
    return options


def _label_set(value: Any) -> LabelSet | None:
    """A LabelSet from a YAML path, a LabelSet, a list of label names or the YAML's mapping (None: none)."""
    if value is None or isinstance(value, LabelSet):
        return value
    if isinstance(value, str):
        return sets.read_label_set(value, key="label_set")
    try:
        return parse_label_set({"labels": list(value)} if isinstance(value, (list, tuple)) else value, "label_set")
    except ValueError as exc:
        raise ConfigError(f"key 'label_set': {exc}") from None


def _gold(spark, gold: Any, label_column: str):
    """DataFrame(id, label) of true labels, checked (labelled.gold_pairs)."""
    opts = labelled.GoldOptions(label_column, key="gold")
    if isinstance(gold, str):
        return labelled.read_gold(spark, gold, opts)[0]
    if isinstance(gold, dict):
        gold = spark.createDataFrame([(str(i), str(v)) for i, v in gold.items()], f"id string, {label_column} string")
    return labelled.gold_pairs(gold, opts, "the gold DataFrame")[0]


def _work_dir(df) -> str:
    """Where a temporary index goes by default: beside the session's warehouse directory."""
    return df.sparkSession.conf.get("spark.sql.warehouse.dir").rstrip("/") + "/sparkamp-work"
