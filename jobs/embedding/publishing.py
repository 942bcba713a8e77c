"""What the embedding jobs share after reading: rows counted in, incremental reuse, the step, rows counted
out and checked, the output published."""
from __future__ import annotations

import logging
from typing import Any, Callable

from jobs.core import session
from jobs.core.config import ConfigError
from jobs.core.summary import JobFailed, RunSummary
from jobs.embedding import incremental, steps
from jobs.embedding.keys import EmbedConfig
from jobs.tables import contracts, ids, publish
from udfs.status import OK

log = logging.getLogger(__name__)


def counters(spark, names: tuple[str, ...]) -> dict[str, Any]:
    """Spark accumulators by name, for the workers' statistics."""
    return {name: spark.sparkContext.accumulator(0.0) for name in names}


def prepare_engine(summary: RunSummary, spec: Any) -> None:
    """The model's engine prepared on the driver before any task (steps.prepare_engine: the export made
    or found), timed, its export seconds and the engine that runs recorded in the run's summary."""
    with summary.timed("prepare engine"):
        prepared = steps.prepare_engine(spec)
    summary.stats["engine_export_seconds"] = round(prepared.export_seconds, 2)
    log.info("%s: engine %s%s", summary.job, prepared.engine, " (auto)" if spec.engine == "auto" else "")


def embed_and_publish(spark, cfg: EmbedConfig, summary: RunSummary, items, embed: Callable[[Any, int], Any],
                      reuse: incremental.Reuse) -> None:
    """items (id, source, ...[, status, error, _order, _where]) → `embed(items, partitions)` (the job's
    step: steps.embed_images or embed_texts) → staged, counted, checked, published. With `incremental`,
    only new and changed items are embedded; `reuse` says how to tell them."""
    with summary.timed("count inputs"):
        summary.rows_in = items.count()
    if summary.rows_in == 0:
        raise ConfigError(f"key 'input': {cfg.input!r} holds no rows to embed")
    todo, reused, to_embed, plan = items, None, summary.rows_in, None
    if cfg.incremental and publish.exists(spark, cfg.output):
        with summary.timed("compare with the previous output"):
            previous = contracts.conform(contracts.read_table(spark, cfg.output), contracts.EMBEDDINGS,
                                         "previous output", cfg.output)
            plan = incremental.plan(ids.mark(items, cfg.id_column), previous, reuse.model_label(), reuse.max_bytes)
        todo, reused = plan.todo, plan.reused
        to_embed = summary.rows_in - plan.counts.get("unchanged", 0)
        summary.stats.update({f"incremental_{k}": v for k, v in plan.counts.items()})
    elif cfg.incremental:
        log.info("incremental: %s does not exist yet; embedding everything", cfg.output)
    summary.stats["embedded"] = to_embed
    partitions = max(1, min(cfg.num_partitions or 2 * spark.sparkContext.defaultParallelism, to_embed))
    embedded = embed(todo, partitions)
    if reused is not None:
        embedded = embedded.unionByName(reused)
    try:
        with summary.timed("embed + write"), session.arrow_batch(spark, cfg.arrow_batch_size):
            publish.publish(spark, embedded, cfg.output, cfg.mode, summary.run_id,
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
