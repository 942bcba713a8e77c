"""Block checkpoints of an all-vs-all search (dedup, unique): each finished (query block, shard group) task's
partial top-k kept as Parquet under a name fixed by the inputs, so a killed run's re-run searches only the rest."""
from __future__ import annotations

import hashlib
import io
import json
import logging
import re
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import pandas as pd

from index import store
from jobs.core.config import JobConfig, key
from jobs.core.paths import hadoop_path
from jobs.indexing import query_blocks, shard_search
from jobs.indexing.shard_search import ShardPlan, Task
from jobs.tables import publish

log = logging.getLogger(__name__)
MARKER = re.compile(r"_b(\d+)-g(\d+)\.done$")


@dataclass(frozen=True)
class QueryBlockKeys(JobConfig):
    """The key of a job whose queries search a sharded index in (query block x shard group) tasks."""

    query_blocks: int = key(0, "sharded index: query blocks (tasks = blocks x shard groups); 0 = one per "
                            f"{shard_search.GROUP_ROWS:,} queries")


@dataclass(frozen=True)
class BlockKeys(QueryBlockKeys):
    """The keys of a job that compares a table with itself through a sharded index, block by block."""

    resume: bool = key(True, "sharded index: keep each finished (block, shard group) search in a hidden folder beside "
                       "the output until the job succeeds; a re-run with the same inputs searches only the "
                       "unfinished blocks (false = search everything again)")


@dataclass(frozen=True)
class Checkpoints:
    """Where a job keeps its finished blocks: `base`, hidden beside the output, one sub-folder per set of
    inputs (see `folder`)."""

    base: str
    resume: bool


@contextmanager
def kept_until_success(spark, output: str, resume: bool) -> Iterator[Checkpoints]:
    """Checkpoints beside `output` (`_sparkamp_staging/<name>-blocks`, which publish.prepare_output does not
    clear): removed when the block of the `with` succeeds, kept when it fails or the driver is killed;
    without `resume`, any earlier run's are removed first."""
    base = publish.staging_location(spark, output, "blocks")
    if not resume:
        publish.remove(spark, base)
    yield Checkpoints(base, resume)
    publish.remove(spark, base)


def digest(rows, shard_plan: ShardPlan) -> str:
    """What determines a task's result: the table's files (a rewrite at the same path has new file
    names), the index's version, k, exclude_self, nprobe / ef_search, the block count and the shard
    groups (which follow the session's cores: a run with other groups searches everything again)."""
    what = {"files": sorted(rows.inputFiles()), "index": shard_plan.version, "k": shard_plan.k,
            "exclude_self": shard_plan.exclude_self, "params": shard_plan.params, "blocks": shard_plan.blocks,
            "groups": shard_plan.groups}
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:16]


def folder(spark, checkpoints: Checkpoints, name: str) -> str:
    """`base/<name>`; other sub-folders (from other inputs: never reusable) are removed."""
    fs, base = hadoop_path(spark, checkpoints.base)
    if fs.exists(base):
        for status in fs.listStatus(base):
            if status.getPath().getName() != name:
                log.info("removing block checkpoints of other inputs: %s", status.getPath())
                fs.delete(status.getPath(), True)
    return f"{checkpoints.base}/{name}"


def finished(spark, location: str) -> set[Task]:
    """(block, shard group) of every done-marker under `location` (listed on the driver)."""
    fs, path = hadoop_path(spark, location)
    if not fs.exists(path):
        return set()
    found = (MARKER.match(s.getPath().getName()) for s in fs.listStatus(path))
    return {(int(m.group(1)), int(m.group(2))) for m in found if m}


def file_name(task: Task) -> str:
    return f"b{task[0]:05d}-g{task[1]:05d}.parquet"


def writer(location: str):
    """(task, partial rows) → the rows as `location/<file_name>`, then its done-marker (written last)."""
    def write(task: Task, frame: pd.DataFrame) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        schema = pa.schema([("id", pa.string()), ("self_id", pa.int64()), ("block", pa.int32()),
                            ("shard_group", pa.int32()), ("scores", pa.list_(pa.float32())),
                            ("ids", pa.list_(pa.int64()))])
        buffer = io.BytesIO()
        pq.write_table(pa.Table.from_pandas(frame, schema=schema, preserve_index=False), buffer)
        sha = store.write_bytes(store.join(location, file_name(task)), buffer.getvalue())
        store.write_bytes(marker(location, task), sha.encode())
    return write


def marker(location: str, task: Task) -> str:
    return store.join(location, f"_{file_name(task)[:-len('.parquet')]}.done")


def searched(rows, shard_plan: ShardPlan, checkpoints: Checkpoints):
    """The PARTIAL_SCHEMA rows of every (block, shard group) task of `rows` (id, embedding), each task
    searched (and written with its done-marker under `<digest>/tasks`) unless a finished one of the same
    inputs exists; the queries are written once to `<digest>/queries` (query_blocks), reused by a re-run.
    Eager: the unfinished tasks run before it returns. Logs "N of M blocks reused, K searched"."""
    spark = rows.sparkSession
    location = folder(spark, checkpoints, digest(rows, shard_plan))
    tasks, queries = store.join(location, "tasks"), store.join(location, "queries")
    done = finished(spark, tasks) if checkpoints.resume else set()
    pending = [task for task in shard_plan.tasks if task not in done]
    log.info("%d of %d blocks reused, %d searched (tasks of one query block x one group of up to %d shards; %s)",
             len(shard_plan.tasks) - len(pending), len(shard_plan.tasks), len(pending),
             len(shard_plan.groups[0]), location)
    for block, group in sorted(done):
        log.debug("reused block %d shard group %d", block, group)
    if pending:
        if not (checkpoints.resume and query_blocks.written(queries)):
            query_blocks.write(rows, shard_plan.blocks, queries)
        fn = shard_search.shard_searcher(shard_plan, queries, writer(tasks))
        shard_search.task_table(spark, pending).mapInPandas(fn, shard_search.TASK_SCHEMA).collect()
    return spark.read.schema(shard_search.PARTIAL_SCHEMA).parquet(tasks)
