"""Search an index with an embeddings table of queries: k nearest neighbours per query, with string ids."""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import ClassVar, Literal

if __package__ in (None, ""):  # `spark-submit jobs/search.py` without the zip on the path
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from jobs.embedding import steps as embedding  # noqa: E402
from jobs.tables import ids  # noqa: E402
from jobs.indexing import partitions as indexing  # noqa: E402
from jobs.tables import inputs  # noqa: E402
from jobs.core import session  # noqa: E402
from jobs.tables import publish as tables  # noqa: E402
from jobs.tables import vectors  # noqa: E402
from jobs.core.config import ConfigError, JobConfig, key, require_non_negative, require_positive  # noqa: E402
from jobs.core.paths import check_input_exists, check_output_not_input  # noqa: E402
from jobs.core.summary import JobFailed, RunSummary  # noqa: E402
from index import manifest  # noqa: E402
from index.manifest import IndexIntegrityError  # noqa: E402

NAME = "search"
PLAN = ("check the manifest and the queries' model → each worker loads the index once → k-NN → publish "
        "(a query that cannot be searched, or finds nothing, is one row with its status)")


@dataclass(frozen=True)
class Config(JobConfig):
    default_output: ClassVar[str] = "neighbours"
    index: str = key("", "the index directory written by build-index", flag="--index")
    queries: str = key("", "an embeddings table of queries (Parquet path or `table:db.name`)",
                       flag="--queries")
    query_images: str = key("", "image files to embed with the index's model and search",
                            flag="--query-images")
    query_texts: str = key("", "a text file, one query per line, embedded with the index's model",
                           flag="--query-texts")
    encoding: str = inputs.encoding_key("the --query-texts file")
    query_expansion: Literal["none", "average", "alpha"] = key(
        "none", "re-search with each query averaged with its first results (average, or alpha-weighted)")
    qe_top: int = key(5, "query expansion: how many first results are averaged in")
    qe_alpha: float = key(3.0, "alpha query expansion: result i weighs similarity_i ** alpha")
    k: int = key(10, "neighbours per query", flag="--k")
    exclude_self: bool = key(False, "drop a query's own id from its neighbours", flag="--exclude-self")
    nprobe: int = key(0, "IVF lists searched; 0 = the value tuned at build (manifest)")
    ef_search: int = key(0, "HNSW search depth; 0 = the manifest's")
    batch_size: int = key(4096, "queries per index.search call (faiss is slower on small blocks)")
    num_partitions: int = key(0, "Spark partitions of the queries; 0 = as read, at least the cores")

    def validate(self) -> None:
        super().validate()
        given = [n for n in ("queries", "query_images", "query_texts") if getattr(self, n)]
        if len(given) != 1:
            raise ConfigError("give exactly one of --queries, --query-images, --query-texts "
                              f"(got {', '.join(given) or 'none'})")
        check_input_exists(given[0], getattr(self, given[0]), globs=given[0] != "query_texts")
        check_input_exists("index", self.index, globs=False)
        check_output_not_input(getattr(self, given[0]), self.output)
        check_output_not_input(self.index, self.output)
        require_positive(self, "k", "batch_size", "qe_top")
        require_non_negative(self, "nprobe", "ef_search", "num_partitions")
        inputs.check_text_keys(self)
        try:  # every file against its sha256, before any Spark work (workers check again on load)
            manifest.verify(self.index, manifest.read(self.index))
        except IndexIntegrityError as exc:
            raise ConfigError(f"key 'index': {exc}") from None



def read_queries(spark, cfg: Config, meta: manifest.Manifest):
    """(DataFrame(id, embedding, status, error) of every query row, rows, distinct ids). A row that
    is not `ok` in the table keeps its status; an `ok` row whose vector cannot be searched gets one
    from vectors.vector_check. Queries of another model, or none of the index's dim, are refused."""
    from pyspark.sql import functions as F

    df = tables.read_input(spark, cfg.queries, "table" if tables.is_table(cfg.queries) else "parquet")
    tables.require_columns(df, {f"queries ({c})": c for c in ("id", "embedding", "status", "model")},
                           cfg.queries)
    ok = F.col("status") == "ok"
    fits = ok & (F.size("embedding") == meta.dim)
    stats = df.agg(F.collect_set(F.when(ok, F.col("model"))).alias("models"), F.count(F.when(ok, 1)).alias("n"),
                   F.count(F.when(fits, 1)).alias("fit"), F.count("*").alias("rows"),
                   F.countDistinct("id").alias("ids"), *ids.id_stats(ok)).first()
    ids.refuse_repeated(df.filter(ok), stats, stats["n"], cfg.queries, "queries")
    others = sorted(set(stats["models"]) - {meta.model})
    if others:
        raise ConfigError(f"key 'queries': embedded with {others}, but the index was built from "
                          f"{meta.model!r} embeddings; embed the queries with {meta.model!r}")
    if stats["n"] and not stats["fit"]:
        raise ConfigError(f"key 'queries': no query has {meta.dim} values; the index is {meta.dim}-d")
    error = (F.col("error") if "error" in df.columns else F.lit(None)).cast("string")
    queries = with_status(df.select("id", "embedding", "status", error.alias("error")), meta)
    return queries, int(stats["rows"]), int(stats["ids"])


def with_status(queries, meta: manifest.Manifest):
    """`ok` query rows whose vectors cannot be searched get vector_check's status and reason."""
    from pyspark.sql import functions as F

    status, error = vectors.vector_check(meta.dim, meta.metric)
    ok = F.col("status") == "ok"
    return queries.select("id", "embedding", F.when(ok, status).otherwise(F.col("status")).alias("status"),
                          F.when(ok, error).otherwise(F.col("error")).alias("error"))


def run(spark, cfg: Config, summary: RunSummary) -> None:
    from pyspark.sql import functions as F

    tables.prepare_output(spark, cfg.output, cfg.mode)
    meta = manifest.read(cfg.index)
    with summary.timed("read queries"):
        if cfg.queries:
            queries, summary.rows_in, ids_in = read_queries(spark, cfg, meta)
        else:  # each query file or line is a row with its status: those that fail are reported too
            raw = embedding.raw_queries(spark, cfg.query_images, cfg.query_texts, meta.model,
                                        cfg.encoding).cache()
            queries = with_status(raw.select("id", "embedding", "status", "error"), meta)
            summary.rows_in, ids_in = raw.count(), raw.select("id").distinct().count()
    queries = indexing.spread(queries, cfg.num_partitions)
    expansion = indexing.Expansion(cfg.query_expansion, cfg.qe_top, cfg.qe_alpha)
    fn = indexing.searcher_fn(cfg.index, cfg.k, cfg.exclude_self, (cfg.nprobe, cfg.ef_search),
                              cfg.batch_size, expansion)
    session.set_arrow_batch(spark, max(cfg.batch_size, 4096))
    neighbours = queries.mapInPandas(fn, indexing.NEIGHBOURS_SCHEMA)

    def verify(staged) -> None:
        """Every query is in the output: with its neighbours, or one row saying why it has none."""
        counts = staged.rollup("status").agg(F.countDistinct("query_id").alias("queries"), F.count("*").alias("rows"),
                                             F.grouping("status").alias("all")).collect()
        total = next(r for r in counts if r["all"])
        if total["queries"] != ids_in:
            raise JobFailed(f"{ids_in} queries but {total['queries']} in the output; nothing was published")
        summary.statuses = {r["status"]: int(r["queries"]) for r in counts if not r["all"]}
        summary.stats["neighbour_rows"] = sum(r["rows"] for r in counts if r["status"] == "ok")

    with summary.timed("search + write"):
        tables.publish(spark, neighbours, cfg.output, cfg.mode, summary.run_id, verify)
    seconds = max(summary.stages["search + write"], 1e-9)
    summary.stats["queries_per_second"] = round(summary.rows_ok / seconds, 1)
    summary.outputs.append(cfg.output)


if __name__ == "__main__":
    from jobs import cli, search

    sys.exit(cli.run_job(search, sys.argv[1:]))
