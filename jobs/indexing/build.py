"""The build-index step: an embeddings table in, a FAISS index directory published at a path (train once on a
sample, add shards in parallel, merge, measure recall), its IndexInfo back. `sparkamp.build_index` and the
build-index job call it."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from datetime import datetime, timezone

from index import manifest, store
from jobs.core.summary import new_run_id, timed
from jobs.indexing import assembly, layout, partitions, training, tree_merge, update
from jobs.indexing.assembly import Shape
from jobs.indexing.options import IndexInfo, IndexOptions
from jobs.tables import contracts, publish, samples, vectors
from jobs.tables.contracts import Embeddings, EmbeddingsCheck

log = logging.getLogger(__name__)
# how the build's table is read; its unusable vectors are found while the shards are added (a full build) or
# in a pass of their own (an incremental update)
TO_INDEX = EmbeddingsCheck(purpose="to index", hint="build one index per model")


def read_to_index(spark, location: str, opts: IndexOptions = IndexOptions()) -> Embeddings:
    """The embeddings table at `location` read and checked (contracts.check_embeddings, TO_INDEX) in one pass
    that also takes the build's seeded training sample and recall queries (training.sampling), so the build
    makes no pass of its own for them, when they are small enough (training.sampling). The rows are counted
    first (Parquet and metastore tables: from file metadata) to size the share of them sampled."""
    raw = contracts.read_table(spark, location)
    check = dataclasses.replace(TO_INDEX, sample=training.sampling(opts, raw.count))
    return contracts.check_embeddings(raw, check, location, stored=True)


def build_index(table: Embeddings, path: str, opts: IndexOptions = IndexOptions(), *,
                stages: dict[str, float] | None = None, run_id: str = "") -> IndexInfo:
    """Builds (or with `opts.incremental`, updates) the index of `table`'s ok rows and publishes it at
    `path` (a local path or any Hadoop/pyarrow URI) atomically: a reader sees the old complete index or
    the new one. Ok rows whose vectors cannot be indexed (NaN, infinite, all zero) are left out and
    counted. `stages` gets the seconds of each stage. Raises ConfigError (the options do not suit the
    table: too few rows to train, repeated ids, no usable vector, ...), JobFailed (recall@10 below
    `opts.min_recall`, a shard changed); nothing is published then, and the previous index at `path` stays.
    The factory and the shards are planned for every ok row: a full build finds the unusable vectors while
    it adds the shards (shard_writer.shard_writer), not in a pass of its own."""
    opts.check()
    spark, stages = table.rows.sparkSession, {} if stages is None else stages
    run_id = run_id or new_run_id()
    publish.prepare_output(spark, path, "overwrite")
    indexed, left_out = table.ok, {}
    if opts.incremental:  # the delta compares the usable rows: they are known before it
        with timed(stages, "check vectors", "build-index"):  # a pass over the vectors (executors)
            indexed, left_out = table.usable(opts.metric, "the index")
    rows = indexed.select(partitions.faiss_id_column(), "id", "embedding", "content_hash")
    count = table.n_ok - sum(left_out.values())
    with timed(stages, "plan", "build-index"):  # the factory and the layout (driver)
        shape = Shape(table.model, table.dim, count, training.choose(opts, count, table.dim))
        plan = layout.plan(opts, shape.choice.factory, count, table.dim, spark.sparkContext.defaultParallelism,
                           rows.rdd.getNumPartitions())
    log.info("index: %s (%s); merge: %s (%s); %d shards (%s)", shape.choice.factory, shape.choice.reason,
             plan.merge, plan.reason, plan.shards, "rows shuffled by id" if plan.shuffle else "input partitions")
    folder = _work_folder(spark, path, opts, run_id, {
        "embeddings": table.location, "factory": shape.choice.factory, "metric": opts.metric, "seed": opts.seed,
        "shards": opts.num_shards, "shard_bytes": opts.shard_bytes, "rows": shape.rows})
    given, opts = opts, layout.resolved(opts, plan)
    prev = update.previous(path, shape.model, shape.dim, opts, shape.choice.factory) if opts.incremental else None
    try:
        if not table.hashes_apart:  # the read counted the ids' hashes: a pass of its own only when it cannot tell
            with timed(stages, "check ids", "build-index"):
                assembly.check_hashes(table.ok, table.n_ok)
        if prev is None:
            meta, left_out, updated = *_build(rows, shape, folder, opts, stages, (plan.shuffle, table.sample)), {}
        else:
            meta, updated = update.update(path, prev, rows, shape, folder, opts, stages)
        meta.left_out, meta.source, meta.config = left_out, table.location, dataclasses.asdict(given)
        meta.merge_reason = plan.reason
        meta.stage_seconds = {k: round(v, 3) for k, v in stages.items()}
        meta.created_at = datetime.now(timezone.utc).isoformat()
        with timed(stages, "publish", "build-index"):
            assembly.publish_index(spark, meta, folder, path, run_id, opts.min_recall)
    except BaseException:
        if not opts.resume:  # a failed build's work folder goes, unless `resume` wants its shards next time
            publish.remove(spark, folder)
        raise
    return IndexInfo.of(path, meta, {"ok": meta.ntotal, **left_out, **table.not_ok}, updated)


def _build(rows, shape: Shape, folder: str, opts: IndexOptions, stages: dict[str, float],
           given: tuple[bool, samples.Samples | None]) -> tuple[manifest.Manifest, dict[str, int]]:
    """Train (driver), add shards (executors: each also gives its exact and approximate top-k of the recall
    queries, counts the rows it leaves out and writes its part of ids.parquet), merge (memory: into one file by one executor
    task; ondisk: on the driver, RAM bounded) or keep the shards (a tree merge on executors with
    shards_to_keep), tune recall from the shards' partial top-k (driver: no index loaded). Returns the
    manifest and {status: rows} of the ok rows left out (vectors.usable_rows logs them). `given`: whether
    the rows are shuffled by id into the shards, and the samples the read pass took (None: not taken)."""
    (shuffle, taken), seeds = given, (opts.seed, opts.seed + 1)
    with timed(stages, "sample", "build-index"):  # the training sample and the recall queries: one pass, if any
        counts = (training.to_train(opts, shape.choice.factory, shape.dim, shape.rows, folder), opts.recall_queries)
        found = taken.take(counts, seeds, opts.metric) if taken else None
        log.info("samples of %d and %d rows: %s", *counts, "taken in the read pass" if found else "a pass of their own")
        sample, queries = found or samples.samples(rows, counts, shape.rows, seeds, opts.metric)
        if not len(queries):  # no sampled row is usable: ConfigError when none is, else sample the usable ones
            usable, found = vectors.usable_rows(rows, shape.rows, shape.dim, opts.metric, "the index")
            sample, queries = samples.samples(usable, counts, shape.rows - sum(found.values()), seeds, opts.metric)
    with timed(stages, "train", "build-index"):
        trained = training.train(sample, shape.rows, shape.dim, shape.choice.factory, opts, folder)
        del sample
    with timed(stages, "add shards", "build-index"):  # and ids.parquet: each shard writer writes its part
        shard_rows, found = assembly.add_shards(rows, trained, folder, queries, opts, shuffle, ids=True)
        rows, left_out = vectors.usable_rows(rows, shape.rows, shape.dim, opts.metric, "the index", found)
        shape = dataclasses.replace(shape, rows=shape.rows - sum(left_out.values()))
        partials = assembly.fold_partials(folder, shard_rows, opts.metric)
    keep, whole = 1 if opts.merge == "memory" else opts.shards_to_keep if opts.merge == "none" else 0, None
    if keep:  # merged on the executors (into one file for memory: the driver never loads the index)
        with timed(stages, "tree merge", "build-index"):
            merged = tree_merge.merge_groups(rows.sparkSession, folder, shard_rows, keep)
            if opts.merge == "memory":
                whole = merged[0]  # the manifest still lists the shards added
            elif any(r["shard"].startswith(tree_merge.MERGED) for r in merged):
                shard_rows = merged
                store.delete_dir(store.join(folder, "shards"))
    with timed(stages, "merge", "build-index"):
        meta = assembly.merge(folder, trained, shard_rows, shape, opts, whole=whole)
    with timed(stages, "measure recall", "build-index"):
        assembly.recall_from_partials(meta, partials, len(queries), assembly.nprobes(trained, opts), opts)
    return meta, left_out


def _work_folder(spark, path: str, opts: IndexOptions, run_id: str, inputs: dict) -> str:
    """A hidden folder beside `path`; named by what determines the build (resumable) when `resume` is on."""
    key = hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()[:12]
    return publish.staging_location(spark, path, f"build-{key}" if opts.resume else f"staging-{run_id}")
