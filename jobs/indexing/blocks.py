"""Block checkpoints of an all-vs-all search (dedup, unique): each finished (query block, shard) task's partial
top-k kept as Parquet under a name fixed by the inputs, so a killed run's re-run searches only the rest."""
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
from jobs.indexing import shard_search
from jobs.indexing.shard_search import ShardPlan
from jobs.tables import publish

log = logging.getLogger(__name__)
MARKER = re.compile(r"_b(\d+)-s(\d+)\.done$")


@dataclass(frozen=True)
class QueryBlockKeys(JobConfig):
    """The key of a job whose queries search a sharded index in (query block x shard) tasks."""

    query_blocks: int = key(0, "sharded index: query blocks (tasks = blocks x shards); 0 = one per "
                            f"{shard_search.GROUP_ROWS:,} queries")


@dataclass(frozen=True)
class BlockKeys(QueryBlockKeys):
    """The keys of a job that compares a table with itself through a sharded index, block by block."""

    resume: bool = key(True, "sharded index: keep each finished (block, shard) search in a hidden folder beside "
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
    """What determines a block's result: the table's files (a rewrite at the same path has new file
    names), the index's version, k, exclude_self, nprobe / ef_search and the block count."""
    what = {"files": sorted(rows.inputFiles()), "index": shard_plan.version, "k": shard_plan.k,
            "exclude_self": shard_plan.exclude_self, "params": shard_plan.params, "blocks": shard_plan.blocks}
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


def finished(spark, location: str) -> set[tuple[int, int]]:
    """(block, shard) of every done-marker under `location` (listed on the driver)."""
    fs, path = hadoop_path(spark, location)
    if not fs.exists(path):
        return set()
    found = (MARKER.match(s.getPath().getName()) for s in fs.listStatus(path))
    return {(int(m.group(1)), int(m.group(2))) for m in found if m}


def file_name(task: tuple[int, int]) -> str:
    return f"b{task[0]:05d}-s{task[1]:05d}.parquet"


def writer(location: str):
    """(task, partial rows) → the rows as `location/<file_name>`, then its done-marker (written last)."""
    def write(task: tuple[int, int], frame: pd.DataFrame) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        schema = pa.schema([("id", pa.string()), ("self_id", pa.int64()), ("block", pa.int32()),
                            ("shard", pa.int32()), ("scores", pa.list_(pa.float32())), ("ids", pa.list_(pa.int64()))])
        buffer = io.BytesIO()
        pq.write_table(pa.Table.from_pandas(frame, schema=schema, preserve_index=False), buffer)
        sha = store.write_bytes(store.join(location, file_name(task)), buffer.getvalue())
        store.write_bytes(marker(location, task), sha.encode())
    return write


def marker(location: str, task: tuple[int, int]) -> str:
    return store.join(location, f"_{file_name(task)[:-len('.parquet')]}.done")


def searched(rows, shard_plan: ShardPlan, checkpoints: Checkpoints):
    """The PARTIAL_SCHEMA rows of every (block, shard) task of `rows` (id, embedding), each task searched
    (and written with its done-marker) unless a finished one of the same inputs exists. Eager: the
    unfinished tasks run before it returns. Logs "N of M blocks reused, K searched"."""
    spark = rows.sparkSession
    location = folder(spark, checkpoints, digest(rows, shard_plan))
    everything = [(b, s) for s in range(len(shard_plan.shards)) for b in range(shard_plan.blocks)]
    done = finished(spark, location) if checkpoints.resume else set()
    pending = [task for task in everything if task not in done]
    log.info("%d of %d blocks reused, %d searched (%s)", len(everything) - len(pending), len(everything),
             len(pending), location)
    for block, shard in sorted(done):
        log.debug("reused block %d shard %d", block, shard)
    if pending:
        fn = shard_search.shard_searcher(shard_plan, writer(location))
        ran = shard_search.tasks(rows, shard_plan, pending).mapInPandas(fn, shard_search.TASK_SCHEMA).collect()
        for task in set(pending) - {(r["block"], r["shard"]) for r in ran}:  # no query hashed to the block
            store.write_bytes(marker(location, task), b"empty")
    return spark.read.schema(shard_search.PARTIAL_SCHEMA).parquet(location)
