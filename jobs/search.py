"""Search an index with an embeddings table of queries: k nearest neighbours per query, with string ids."""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import ClassVar, Literal

if __package__ in (None, ""):  # `spark-submit jobs/search.py` without the zip: the checkout on the path
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from jobs import cli  # noqa: E402
from jobs.core.config import ConfigError, key  # noqa: E402
from jobs.core.paths import check_input_exists, check_output_not_input  # noqa: E402
from jobs.core.summary import JobFailed, RunSummary  # noqa: E402
from jobs.embedding.queries import raw_queries  # noqa: E402
from jobs.indexing import neighbours  # noqa: E402
from jobs.indexing.blocks import QueryBlockKeys  # noqa: E402
from jobs.tables import contracts, inputs, publish, scratch  # noqa: E402
from index import manifest  # noqa: E402
from index.manifest import IndexIntegrityError  # noqa: E402
from udfs.reranking import METHODS, Rerank  # noqa: E402

NAME = "search"
PLAN = ("check the manifest and the queries' model → each worker loads the index once (a sharded index: "
        "the queries written once by block, query blocks x shard groups tasks, each worker opens only its tasks' "
        "shards, partial top-k merged per query) "
        "→ k-NN → publish (a query that cannot be searched, or finds nothing, is one row with its status)")


@dataclass(frozen=True)
class Config(QueryBlockKeys):
    default_output: ClassVar[str] = "neighbours"
    index: str = key("", "the index directory written by build-index", flag="--index")
    queries: str = key("", "an embeddings table of queries (Parquet path or `table:db.name`)",
                       flag="--queries")
    query_images: str = key("", "image files to embed with the index's model and search",
                            flag="--query-images")
    query_texts: str = key("", "a text file, one query per line, embedded with the index's model",
                           flag="--query-texts")
    encoding: str = inputs.encoding_key("the --query-texts file")
    rerank: Literal[METHODS] = key(
        "none", "re-order each query's first rerank_top results: average-qe / alpha-qe (query expansion: the "
        "query averaged with its qe_top first results), diffusion (Iscen et al. 2017, on the candidates' "
        "graph); the scores are then the re-ranking's")
    rerank_top: int = key(100, "re-ranking: candidates per query (the search fetches max(k, rerank_top))")
    qe_top: int = key(5, "query expansion: how many first results are averaged in; diffusion: how many seed it")
    qe_alpha: float = key(3.0, "alpha query expansion: result i weighs similarity_i ** alpha")
    rerank_graph_k: int = key(10, "diffusion: each candidate's mutual nearest neighbours in the graph")
    query_expansion: Literal["none", "average", "alpha"] = key(
        "none", "deprecated: average = rerank: average-qe, alpha = rerank: alpha-qe")
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
        if self.query_expansion != "none" and self.rerank not in ("none", self.rerank_method):
            raise ConfigError(f"keys 'query_expansion' and 'rerank' disagree ({self.query_expansion!r}, "
                              f"{self.rerank!r}): give only rerank (query_expansion is deprecated)")
        self.options.check()
        inputs.check_text_keys(self.encoding)
        try:  # every file against its sha256, before any Spark work (workers check again on load)
            meta = manifest.read(self.index)
            manifest.verify(self.index, meta)
        except IndexIntegrityError as exc:
            raise ConfigError(f"key 'index': {exc}") from None
        neighbours.check_rerank(meta, self.rerank_method, "query_expansion" if self.query_expansion != "none" else "rerank")

    @property
    def options(self) -> neighbours.SearchOptions:
        return neighbours.SearchOptions(self.k, self.exclude_self, self.nprobe, self.ef_search, self.batch_size,
                                        self.num_partitions,
                                        Rerank(self.rerank_method, self.rerank_top, self.qe_top, self.qe_alpha,
                                               self.rerank_graph_k), self.query_blocks)

    @property
    def rerank_method(self) -> str:
        """`rerank`, or what the deprecated `query_expansion` maps onto."""
        if self.query_expansion != "none":
            return f"{self.query_expansion}-qe"
        return self.rerank


def read_queries(spark, cfg: Config, meta: manifest.Manifest) -> contracts.Embeddings:
    """Every query row: a table of embeddings, or files / lines of text embedded with the index's model
    (each a row with its status: those that fail are reported too)."""
    if cfg.queries:
        return contracts.read_embeddings(spark, cfg.queries, neighbours.query_check(meta))
    raw = raw_queries(spark, cfg.query_images, cfg.query_texts, meta.model, cfg.encoding).cache()
    return contracts.check_embeddings(raw, neighbours.query_check(meta), cfg.query_images or cfg.query_texts)


def run(spark, cfg: Config, summary: RunSummary) -> None:
    from pyspark.sql import functions as F

    publish.prepare_output(spark, cfg.output, cfg.mode)
    with summary.timed("read queries"):
        queries = read_queries(spark, cfg, neighbours.checked_manifest(cfg.index))
        summary.rows_in, ids_in = queries.n_rows, queries.rows.agg(F.countDistinct("id")).first()[0]

    def verify(staged) -> None:
        """Every query is in the output: with its neighbours, or one row saying why it has none."""
        counts = staged.rollup("status").agg(F.countDistinct("query_id").alias("queries"), F.count("*").alias("rows"),
                                             F.grouping("status").alias("all")).collect()
        total = next(r for r in counts if r["all"])
        if total["queries"] != ids_in:
            raise JobFailed(f"{ids_in} queries but {total['queries']} in the output; nothing was published")
        summary.statuses = {r["status"]: int(r["queries"]) for r in counts if not r["all"]}
        summary.stats["neighbour_rows"] = sum(r["rows"] for r in counts if r["status"] == "ok")

    with summary.timed("search + write"), scratch.folder(spark, cfg.output, "queries") as work:
        found = neighbours.search(queries, cfg.index, cfg.options, work)  # a sharded index writes its queries to work
        publish.publish(spark, found, cfg.output, cfg.mode, summary.run_id, verify)
    seconds = max(summary.stages["search + write"], 1e-9)
    summary.stats["queries_per_second"] = round(summary.rows_ok / seconds, 1)
    summary.outputs.append(cfg.output)


if __name__ == "__main__":
    sys.exit(cli.main([NAME, *sys.argv[1:]]))
