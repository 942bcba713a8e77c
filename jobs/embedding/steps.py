"""What the embedding jobs share: partitioning, running the embedder, counting and publishing rows."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable, Literal

from jobs.tables import ids
from jobs.tables import listing
from jobs.core import session
from jobs.tables import publish as tables
from jobs.embedding import items as text_items
from jobs.core.config import ConfigError, JobConfig, key, require_non_negative, require_positive
from jobs.core.paths import check_input_exists, check_output_not_input
from jobs.core.summary import JobFailed, RunSummary
from udfs import precision
from udfs.embed_udfs import EMBEDDINGS_SCHEMA
from udfs.status import OK

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EmbedConfig(JobConfig):
    """Keys the embedding jobs share."""

    input: str = key("", "a path (read as named, whatever its characters), a Hadoop glob (only when no path "
                     "has that name; `\\` escapes a metacharacter) or `table:db.name`", flag="--input")
    input_format: Literal["auto", "images", "parquet", "csv", "jsonl", "text-dir", "table"] = key(
        "auto", "how to read `input`; auto = from the path")
    id_column: str = key("id", "column holding each row's unique id (tabular inputs)",
                         flag="--id-column")
    batch_size: int = key(32, "items per model call")
    num_partitions: int = key(0, "Spark partitions to embed in; 0 = 2 x the cluster's cores")
    torch_threads: int = key(0, "torch threads per task; 0 = the task's cores (spark.task.cpus)")
    incremental: bool = key(False, "keep rows of the existing output whose id, content hash and model "
                            "are unchanged; embed new and changed items; drop ids no longer in the input")
    precision: Literal["fp32", "bf16"] = key(
        "fp32", "bf16 = autocast matmuls/convolutions to bfloat16 (about 2x faster on CPUs with AVX-512 "
        "BF16 or AMX, cosine >= 0.99 to fp32); recorded in the `model` column as `name+bf16`")

    def validate(self) -> None:
        super().validate()
        if self.incremental and self.mode != "overwrite":
            raise ConfigError(f"key 'incremental': needs mode overwrite (the output is rebuilt from the "
                              f"kept and new rows), not {self.mode}")
        check_input_exists("input", self.input)
        check_output_not_input(self.input, self.output)
        require_positive(self, "batch_size")
        require_non_negative(self, "num_partitions", "torch_threads")
        if self.precision != "fp32" and not precision.native_bf16():
            log.warning("precision %s: this driver's CPU has no bf16 instructions; executors without "
                        "them emulate bf16, slower than fp32", self.precision)



@dataclass(frozen=True)
class RowsInfo:
    rows: int
    dim: int
    model: str


def read_ok_embeddings(spark, location: str, purpose: str, one_model_hint: str) -> tuple["object", RowsInfo]:
    """The `ok` rows of an embeddings table (all columns), after checking one model and one dimension."""
    from pyspark.sql import functions as F

    df = tables.read_input(spark, location, "table" if tables.is_table(location) else "parquet")
    tables.require_columns(df, {f"embeddings ({c})": c for c in ("id", "embedding", "status", "model")},
                           location)
    kind = df.schema["embedding"].dataType.simpleString()
    if kind not in ("array<float>", "array<double>"):
        raise ConfigError(f"key 'embeddings': column embedding is {kind}, not an array of floats")
    ok = df.filter(F.col("status") == "ok")
    stats = ok.agg(F.count("*").alias("n"), F.min(F.size("embedding")).alias("lo"),
                   F.max(F.size("embedding")).alias("hi"), F.collect_set("model").alias("models"),
                   *ids.id_stats()).first()
    where = f"in {location!r}"
    if stats["n"] == 0:
        raise ConfigError(f"key 'embeddings': no rows with status ok {where}; nothing {purpose}")
    ids.refuse_repeated(ok, stats, stats["n"], location, "embeddings")
    if stats["lo"] != stats["hi"]:
        raise ConfigError(f"key 'embeddings': embeddings of {stats['lo']} and {stats['hi']} dims {where}")
    if len(stats["models"]) != 1:
        raise ConfigError(f"key 'embeddings': rows of several models {sorted(stats['models'])} {where}; "
                          + one_model_hint)
    return ok, RowsInfo(int(stats["n"]), int(stats["lo"]), stats["models"][0])


def listed_files(spark, summary: RunSummary, location: str, extensions: tuple[str, ...] = ()):
    """DataFrame(id, source, path) of the files `location` names (`listing.list_files`); the entries
    skipped are counted in the summary (`skipped_hidden`, `skipped_extension`)."""
    listed = listing.list_files(spark, location, extensions)
    summary.stats.update(listed.stats())
    return listed.items


def counters(spark, names: tuple[str, ...]) -> dict[str, Any]:
    return {name: spark.sparkContext.accumulator(0.0) for name in names}


def embed_and_publish(spark, cfg: EmbedConfig, summary: RunSummary, items,
                      embedder: Callable, arrow_batch_size: int, model_label: Callable[[], str]) -> None:
    """items (id, source, ...[, status, error, _order, _where]) → ids marked (`ids.mark`) → embedder via
    mapInPandas → staged, counted, checked, published. With `incremental`, only new and changed items
    are embedded; `model_label()` names the model the rows would get (to tell a model change)."""
    from jobs.embedding import incremental

    items = ids.mark(items, cfg.id_column)
    with summary.timed("count inputs"):
        summary.rows_in = items.count()
    if summary.rows_in == 0:
        raise ConfigError(f"key 'input': {cfg.input!r} holds no rows to embed")
    todo, reused, to_embed, plan = items, None, summary.rows_in, None
    if cfg.incremental:
        with summary.timed("compare with the previous output"):
            plan = incremental.plan(spark, cfg.output, items, model_label(), getattr(cfg, "max_bytes", 2**26))
        todo, reused = plan.todo, plan.reused
        if reused is not None:
            to_embed = summary.rows_in - plan.counts.get("unchanged", 0)
            summary.stats.update({f"incremental_{k}": v for k, v in plan.counts.items()})
    summary.stats["embedded"] = to_embed
    partitions = cfg.num_partitions or 2 * spark.sparkContext.defaultParallelism
    session.set_arrow_batch(spark, arrow_batch_size)
    embedded = todo.repartition(max(1, min(partitions, to_embed))).mapInPandas(embedder, EMBEDDINGS_SCHEMA)
    if reused is not None:
        embedded = embedded.unionByName(reused)
    try:
        with summary.timed("embed + write"):
            tables.publish(spark, embedded, cfg.output, cfg.mode, summary.run_id,
                           verify=lambda staged: _check_rows(staged, summary))
    finally:
        if plan is not None:
            plan.release()
    summary.outputs.append(cfg.output)


def _check_rows(staged, summary: RunSummary) -> None:
    """Counts rows by status (and the ok rows' distinct ids, in the same pass); refuses to publish on a
    loss, or when ok rows share an id (ids.mark makes that impossible: this is the last guard)."""
    from pyspark.sql import functions as F

    counts = staged.groupBy("status").agg(F.count("*").alias("n"), F.countDistinct("id").alias("ids"))
    counts = counts.collect()
    summary.statuses = {row["status"]: int(row["n"]) for row in counts}
    if summary.rows_out != summary.rows_in:
        raise JobFailed(f"{summary.rows_in} rows in but {summary.rows_out} rows out; "
                        "nothing was published")
    ok = next((row for row in counts if row["status"] == OK), None)
    if ok is not None and ok["ids"] != ok["n"]:
        raise JobFailed(f"{ok['n']} ok rows but {ok['ids']} distinct ids among them; nothing was published")


def add_counter_stats(summary: RunSummary, values: dict[str, Any]) -> None:
    for name, acc in values.items():
        summary.stats[name] = round(float(acc.value), 3)


def raw_queries(spark, images: str, texts_file: str, model: str, encoding: str = "utf-8"):
    """Query files or lines of text embedded with `model` (an index's): DataFrame of embeddings rows.
    Text lines are decoded with `encoding`; a line that cannot be is a `decode_error` row, a repeated
    line a `duplicate_id` row (the id of a text query is its text)."""
    from udfs import cnn, texts
    from udfs.embed_udfs import ImageJobOptions, TextJobOptions, image_embedder, text_embedder

    if images:
        spec = cnn.spec_from_label(model)
        _check_model(lambda: cnn.check_spec(spec), model, "embed-images")
        items = listing.list_files(spark, images).items
        fn = image_embedder(spec, ImageJobOptions(), {})
    else:
        spec = texts.spec_from_label(model)
        _check_model(lambda: texts.check_spec(spec), model, "embed-texts")
        items = spark.createDataFrame(text_items.query_lines(texts_file, encoding),
                                      text_items.QUERY_LINES_SCHEMA)
        fn = text_embedder(spec, TextJobOptions(), {})
    return ids.mark(items).mapInPandas(fn, EMBEDDINGS_SCHEMA)


def _check_model(check: Callable, model: str, job: str) -> None:
    try:
        check()
    except ValueError:
        raise ConfigError(f"the index's model {model!r} cannot be rebuilt from its name; embed the "
                          f"queries with `sparkamp {job}` and pass them with --queries") from None
