"""Search an index with an embeddings table of queries: k nearest neighbours per query, with string ids."""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import ClassVar, Literal

if __package__ in (None, ""):  # `spark-submit jobs/search.py` without the zip on the path
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from jobs import embedding, ids, indexing, inputs, session, tables  # noqa: E402
from jobs.config import ConfigError, JobConfig, key, require_non_negative, require_positive  # noqa: E402
from jobs.paths import check_input_exists, check_output_not_input  # noqa: E402
from jobs.summary import JobFailed, RunSummary  # noqa: E402
from index import manifest  # noqa: E402
from index.manifest import IndexIntegrityError  # noqa: E402

NAME = "search"
PLAN = "check the manifest and the queries' model → each worker loads the index once → k-NN → publish"


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
        check_input_exists(given[0], getattr(self, given[0]))
        check_input_exists("index", self.index)
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
    """The `ok` query rows (id, embedding), after checking they come from the index's model."""
    from pyspark.sql import functions as F

    df = tables.read_input(spark, cfg.queries, "table" if tables.is_table(cfg.queries) else "parquet")
    tables.require_columns(df, {f"queries ({c})": c for c in ("id", "embedding", "status", "model")},
                           cfg.queries)
    ok = df.filter(F.col("status") == "ok")
    stats = ok.agg(F.collect_set("model").alias("models"), F.count("*").alias("n"),
                   F.max(F.size("embedding")).alias("dim"), *ids.id_stats()).first()
    ids.refuse_repeated(ok, stats, stats["n"], cfg.queries, "queries")
    others = sorted(set(stats["models"]) - {meta.model})
    if others:
        raise ConfigError(f"key 'queries': embedded with {others}, but the index was built from "
                          f"{meta.model!r} embeddings; embed the queries with {meta.model!r}")
    if stats["n"] and stats["dim"] != meta.dim:
        raise ConfigError(f"key 'queries': {stats['dim']}-d vectors, the index is {meta.dim}-d")
    return ok.select("id", "embedding"), int(stats["n"]), df.count()


def run(spark, cfg: Config, summary: RunSummary) -> None:
    tables.prepare_output(spark, cfg.output, cfg.mode)
    meta = manifest.read(cfg.index)
    with summary.timed("read queries"):
        if cfg.queries:
            queries, n_ok, summary.rows_in = read_queries(spark, cfg, meta)
        else:
            raw = embedding.raw_queries(spark, cfg.query_images, cfg.query_texts, meta.model,
                                        cfg.encoding).cache()
            queries = raw.filter("status = 'ok'").select("id", "embedding")
            n_ok, summary.rows_in = queries.count(), raw.count()
    queries = indexing.spread(queries, cfg.num_partitions)
    expansion = indexing.Expansion(cfg.query_expansion, cfg.qe_top, cfg.qe_alpha)
    fn = indexing.searcher_fn(cfg.index, cfg.k, cfg.exclude_self, (cfg.nprobe, cfg.ef_search),
                              cfg.batch_size, expansion)
    session.set_arrow_batch(spark, max(cfg.batch_size, 4096))
    neighbours = queries.mapInPandas(fn, indexing.NEIGHBOURS_SCHEMA)

    def verify(staged) -> None:
        answered = staged.select("query_id").distinct().count()
        if meta.ntotal > 1 and answered != n_ok:
            raise JobFailed(f"{n_ok} queries but {answered} have neighbours; nothing was published")
        summary.count_ok(answered, skipped=summary.rows_in - n_ok)
        summary.stats["neighbour_rows"] = staged.count()

    with summary.timed("search + write"):
        tables.publish(spark, neighbours, cfg.output, cfg.mode, summary.run_id, verify)
    summary.stats["queries_per_second"] = round(n_ok / max(summary.stages["search + write"], 1e-9), 1)
    summary.outputs.append(cfg.output)


if __name__ == "__main__":
    from jobs import cli, search

    sys.exit(cli.run_job(search, sys.argv[1:]))
