"""A report's inputs read in Spark: seeded samples and the few rows a page shows, never whole tables."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from jobs.tables import contracts, inputs, labelled
from udfs.report_sections import Item, Neighbour
from udfs.report_tables import is_retrieval
from udfs.report_thumbs import THUMBS_SCHEMA, thumbnailer


@dataclass(frozen=True)
class Sources:
    """The tables and files a report reads, by input (embeddings, neighbours, unique, dedup, labels,
    metrics, runs, gold, texts: those given), and how its gold and texts files are read."""

    given: dict[str, str]
    label_column: str = "label"
    text_column: str = "text"
    encoding: str = "utf-8"
    delimiter: str = ","

    def location(self, name: str) -> str:
        """Where the input `name` is, "" when it was not given."""
        return self.given.get(name, "")


@dataclass(frozen=True)
class Shown:
    """How much of each table a report shows; the names are the report job's config keys."""

    sample: int = 2000
    max_queries: int = 24
    max_neighbours: int = 8
    max_unique: int = 24
    max_groups: int = 12
    group_size: int = 8
    max_classes: int = 30
    max_runs: int = 30
    thumb_size: int = 64
    snippet_chars: int = 160
    seed: int = 0


@dataclass
class Gathered:
    """What each section will show; None = the section's input was not given."""

    grids: list[tuple[str, list[Neighbour]]] | None = None
    queries: int = 0
    unique: list[tuple[str, str | None, float | None, int]] | None = None
    unique_total: int = 0
    groups: list[tuple[str, int, list[tuple[str, float]]]] | None = None
    groups_total: int = 0
    predictions: list[tuple[str, str | None, float | None]] | None = None
    label_statuses: dict[str, int] = field(default_factory=dict)
    map_ids: list[str] | None = None
    map_vectors: np.ndarray | None = None
    embedding_statuses: dict[str, int] = field(default_factory=dict)
    classification: list[dict[str, Any]] = field(default_factory=list)
    confusion: list[dict[str, Any]] = field(default_factory=list)
    classes_total: int = 0
    retrieval: list[dict[str, Any]] = field(default_factory=list)
    runs: list[dict[str, Any]] | None = None

    def ids(self) -> set[str]:
        """Every item id a section shows: the only rows whose thumbnails and texts are read."""
        found = set(self.map_ids or [])
        for query, cells in self.grids or []:
            found |= {query, *(c[0] for c in cells)}
        for item, nearest, _, _ in self.unique or []:
            found |= {item} | ({nearest} if nearest is not None else set())
        for _, _, members in self.groups or []:
            found |= {m for m, _ in members}
        found |= {row[0] for row in self.predictions or []}
        return found


def pick(df, column: str, n: int, seed: int):
    """n rows chosen by a seeded hash of `column`: the same every run; a top-n, not a collect."""
    from pyspark.sql import functions as F

    return df.orderBy(F.xxhash64(F.col(column), F.lit(seed)), column).limit(n)


def _statuses(df) -> dict[str, int]:
    return {str(r["status"]): int(r["count"]) for r in df.groupBy("status").count().collect()}


def _table(spark, src: Sources, name: str, contract: contracts.Contract):
    """The input `name` read as `contract` says, or None when it was not given."""
    location = src.location(name)
    return contracts.read(spark, location, contract, name) if location else None


def gather(spark, src: Sources, cfg: Shown) -> Gathered:
    """What each section shows, read from the `src` tables in Spark: seeded samples and top-n rows."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    out = Gathered()
    nb = _table(spark, src, "neighbours", contracts.NEIGHBOURS)
    if nb is not None:
        firsts = nb.filter(F.col("rank") == 1).select("query_id")
        queries = sorted(r.query_id for r in pick(firsts, "query_id", cfg.max_queries, cfg.seed).collect())
        shown = nb.filter(F.col("query_id").isin(queries) & (F.col("rank") <= cfg.max_neighbours)).collect()
        out.grids = [(q, sorted(((r.neighbor_id, r["rank"], float(r.score)) for r in shown if r.query_id == q),
                                key=lambda c: c[1])) for q in queries]
        out.queries = firsts.count()
    un = _table(spark, src, "unique", contracts.UNIQUENESS)
    if un is not None:
        out.unique = [(r.id, r.nearest_id, r.nearest_score, r["rank"])
                      for r in un.orderBy("rank").limit(cfg.max_unique).collect()]
        out.unique_total = un.count()
    dd = _table(spark, src, "dedup", contracts.DUPLICATE_GROUPS)
    if dd is not None:
        sizes = dd.groupBy("group_id").count()
        top = {r.group_id: int(r["count"]) for r in
               sizes.orderBy(F.desc("count"), "group_id").limit(cfg.max_groups).collect()}
        best = Window.partitionBy("group_id").orderBy((F.col("id") != F.col("group_id")),
                                                      F.desc("score_to_representative"), "id")
        members = (dd.filter(F.col("group_id").isin(list(top))).withColumn("n", F.row_number().over(best))
                   .filter(F.col("n") <= cfg.group_size).orderBy("group_id", "n").collect())
        out.groups = sorted(((g, size, [(m.id, float(m.score_to_representative)) for m in members
                                        if m.group_id == g]) for g, size in top.items()),
                            key=lambda group: (-group[1], group[0]))
        out.groups_total = sizes.count()
    lb = _table(spark, src, "labels", contracts.LABELS)
    if lb is not None:
        firsts = lb.filter(F.col("rank").isNull() | (F.col("rank") == 1)).dropDuplicates(["id"])
        out.predictions = sorted((r.id, r.label, r.score) for r in
                                 pick(firsts, "id", cfg.max_queries, cfg.seed).collect())
        out.label_statuses = _statuses(firsts)
    emb = _table(spark, src, "embeddings", contracts.EMBEDDINGS)
    if emb is not None:
        ok = emb.filter(F.col("status") == "ok").select("id", "embedding")
        rows = pick(ok, "id", cfg.sample, cfg.seed).collect()
        out.map_ids = [r.id for r in rows]
        out.map_vectors = np.array([r.embedding for r in rows], np.float32).reshape(len(rows), -1)
        out.embedding_statuses = _statuses(emb)
    if src.location("metrics"):
        _metrics(cfg, _table(spark, src, "metrics", contracts.METRICS), out)
    if src.location("runs"):
        runs = contracts.read_table(spark, src.location("runs"))
        out.runs = [r.asDict() for r in runs.orderBy(F.desc("started_at")).limit(cfg.max_runs).collect()]
    return out


def _metrics(cfg: Shown, mt, out: Gathered) -> None:
    from pyspark.sql import functions as F

    rows = [r.asDict() for r in mt.filter(F.col("metric") != "confusion")
            .orderBy("metric", "class").limit(50_000).collect()]
    out.retrieval = [r for r in rows if is_retrieval(r["metric"])]
    out.classification = [r for r in rows if not is_retrieval(r["metric"])]
    support = {r["class"]: r["queries"] or 0 for r in out.classification
               if r["metric"] == "recall" and r["class"] is not None}
    out.classes_total = len(support)
    shown = sorted(support, key=lambda c: (-support[c], c))[:cfg.max_classes]
    out.confusion = [r.asDict() for r in mt.filter((F.col("metric") == "confusion") & F.col("class").isin(shown))
                     .limit(50_000).collect()]


def describe(spark, src: Sources, cfg: Shown, ids: set[str]) -> dict[str, Item]:
    """{id: Item} for the shown ids: thumbnails made on the workers, text snippets, gold and predicted."""
    from pyspark.sql import functions as F

    if not ids:
        return {}
    wanted = spark.createDataFrame([(i,) for i in sorted(ids)], "id string")
    details = wanted
    if src.location("embeddings"):
        sources = _table(spark, src, "embeddings", contracts.EMBEDDINGS)
        sources = wanted.join(sources.select("id", "source").dropDuplicates(["id"]), "id")
        details = details.join(sources.mapInPandas(thumbnailer(cfg.thumb_size), THUMBS_SCHEMA), "id", "left")
    where = src.location("texts")
    if where:
        texts = inputs.read(spark, where, inputs.detect_format(where, "auto"), inputs.ReadOptions(
            src.encoding, inputs.csv_delimiter(src.delimiter), key="texts"))
        contracts.require_columns(texts, {"texts (id)": "id", "text_column": src.text_column}, where)
        text = F.col(src.text_column).cast("string")
        snippet = F.when(F.length(text) > cfg.snippet_chars,
                         F.concat(F.substring(text, 1, cfg.snippet_chars), F.lit("…"))).otherwise(text)
        details = details.join(texts.select(F.col("id").cast("string").alias("id"), snippet.alias("snippet"))
                               .dropDuplicates(["id"]), "id", "left")
    if src.location("gold"):
        gold, _ = labelled.read_gold(spark, src.location("gold"), labelled.GoldOptions(
            src.label_column, src.encoding, src.delimiter))
        gold = gold.select("id", F.col("label").alias("gold"))
        details = details.join(gold, "id", "left")
    labels = _table(spark, src, "labels", contracts.LABELS)
    if labels is not None:
        first = labels.filter(F.col("rank") == 1).select("id", F.col("label").alias("predicted"))
        details = details.join(first.dropDuplicates(["id"]), "id", "left")
    return {r.id: Item(r.id, **{k: v for k, v in r.asDict().items() if k != "id"}) for r in details.collect()}
