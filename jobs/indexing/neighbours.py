"""All-vs-all neighbours of an embeddings table through an index: the given one, or one built for the run."""
from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Iterator

from jobs.tables import ids
from jobs.indexing import partitions as indexing
from jobs.core import session
from jobs.tables import publish as tables
from jobs.core.config import ConfigError
from jobs.core.summary import RunSummary
from index import manifest

log = logging.getLogger(__name__)


def read_ok(spark, location: str, key_name: str, model: str = ""):
    """(ok rows [id, embedding, content_hash], ok count, all rows) of an embeddings table.

    With `model`, rows embedded by another model are refused before any work.
    """
    from pyspark.sql import functions as F

    df = tables.read_input(spark, location, "table" if tables.is_table(location) else "parquet")
    tables.require_columns(df, {f"{key_name} ({c})": c for c in ("id", "embedding", "status", "model")},
                           location)
    ok = df.filter(F.col("status") == "ok")
    stats = ok.agg(F.collect_set("model").alias("models"), F.count("*").alias("n"), *ids.id_stats()).first()
    ids.refuse_repeated(ok, stats, stats["n"], location, key_name)
    if model and set(stats["models"]) - {model}:
        raise ConfigError(f"key '{key_name}': embedded with {sorted(set(stats['models']) - {model})}, "
                          f"but the index was built from {model!r} embeddings")
    hashes = F.col("content_hash") if "content_hash" in df.columns else F.lit(None).cast("string")
    return ok.select("id", "embedding", hashes.alias("content_hash")), int(stats["n"]), df.count()


@contextmanager
def index_for(spark, cfg, summary: RunSummary) -> Iterator[str]:
    """`cfg.index`, or a temporary index of `cfg.embeddings` (factory auto) removed afterwards."""
    if cfg.index:
        yield cfg.index
        return
    from jobs import build_index

    folder = tables.staging_location(spark, cfg.output, f"index-{summary.run_id}")
    build_cfg = build_index.Config(embeddings=cfg.embeddings, output=folder, warehouse=cfg.warehouse,
                                   runs_table="", spark=cfg.spark, master=cfg.master)
    build_cfg.validate()
    step = RunSummary(build_index.NAME, summary.run_id)
    with summary.timed("build index"):
        build_index.run(spark, build_cfg, step)
    try:
        yield folder
    finally:
        tables.remove(spark, folder)


def checked_manifest(folder: str) -> manifest.Manifest:
    """The index's manifest, which must use inner products (cosine on normalised vectors)."""
    meta = manifest.read(folder)
    if meta.metric != "ip":
        raise ConfigError(f"key 'index': built with metric {meta.metric}; similarity scores need an "
                          "`ip` index (cosine on normalised vectors)")
    return meta


def all_neighbours(ok, folder: str, k: int, nprobe: int, batch_size: int):
    """NEIGHBOURS_SCHEMA rows: each row's k nearest *other* rows (status ok), or one no_neighbours row."""
    fn = indexing.searcher_fn(folder, k, True, (nprobe, 0), batch_size)
    session.set_arrow_batch(ok.sparkSession, max(batch_size, 4096))
    return indexing.spread(ok.select("id", "embedding")).mapInPandas(fn, indexing.NEIGHBOURS_SCHEMA)
