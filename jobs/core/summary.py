"""A job run's summary: rows in / ok / failed by status, seconds per stage, outputs; logged and kept."""
from __future__ import annotations

import io
import json
import logging
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterator

log = logging.getLogger("sparkamp")


def new_run_id() -> str:
    return uuid.uuid4().hex[:12]


class JobFailed(RuntimeError):
    """The job ran but refused to publish (rows lost, an index below min_recall): exit code 1."""


@contextmanager
def timed(stages: dict[str, float], stage: str, job: str = "sparkamp") -> Iterator[None]:
    """Adds the seconds one stage takes to `stages[stage]`, logging its start and end."""
    log.info("%s: %s ...", job, stage)
    start = time.perf_counter()
    try:
        yield
    finally:
        stages[stage] = stages.get(stage, 0.0) + time.perf_counter() - start
        log.info("%s: %s done in %.1f s", job, stage, stages[stage])


@dataclass
class RunSummary:
    job: str
    run_id: str
    started: float = field(default_factory=time.time)
    stages: dict[str, float] = field(default_factory=dict)
    rows_in: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    stats: dict[str, float] = field(default_factory=dict)
    outputs: list[str] = field(default_factory=list)
    notes: dict[str, str] = field(default_factory=dict)  # decisions worth a line (e.g. build-index's merge)

    def timed(self, stage: str):
        """Times one stage and logs it: `with summary.timed("embed + write"):`."""
        return timed(self.stages, stage, self.job)

    def count_ok(self, ok: int, skipped: int | None = None) -> None:
        """Statuses of a job that reads embeddings: `ok` rows used, the rest (not ok) skipped."""
        skipped = self.rows_in - ok if skipped is None else skipped
        self.statuses = {"ok": ok, **({"skipped": skipped} if skipped > 0 else {})}

    @property
    def rows_ok(self) -> int:
        return self.statuses.get("ok", 0)

    @property
    def rows_out(self) -> int:
        return sum(self.statuses.values())

    @property
    def seconds(self) -> float:
        return time.time() - self.started

    def items_per_second(self, stage: str) -> float:
        seconds = self.stages.get(stage, 0.0)
        return self.rows_out / seconds if seconds > 0 else 0.0

    def log_summary(self) -> None:
        failed = {k: v for k, v in sorted(self.statuses.items()) if k != "ok"}
        log.info("%s run %s summary", self.job, self.run_id)
        log.info("  rows in %d, out %d, ok %d, failed %d %s", self.rows_in, self.rows_out,
                 self.rows_ok, sum(failed.values()), json.dumps(failed) if failed else "")
        for stage, seconds in self.stages.items():
            log.info("  %-28s %8.1f s", stage, seconds)
        for name, value in sorted(self.stats.items()):
            log.info("  %-28s %10.4g", name, value)
        for name, text in self.notes.items():
            log.info("  %-28s %s", name, text)
        for output in self.outputs:
            log.info("  output: %s", output)

    def row(self, config: dict[str, Any]) -> dict[str, Any]:
        return {
            "run_id": self.run_id, "job": self.job,
            "started_at": datetime.fromtimestamp(self.started, timezone.utc).isoformat(),
            "seconds": round(self.seconds, 3), "rows_in": self.rows_in, "rows_out": self.rows_out,
            "rows_ok": self.rows_ok, "statuses": json.dumps(self.statuses),
            "stages": json.dumps({k: round(v, 3) for k, v in self.stages.items()}),
            "stats": json.dumps(self.stats), "outputs": json.dumps(self.outputs),
            "config": json.dumps(config, default=str),
        }


def append_run(spark, runs_table: str, row: dict[str, Any]) -> None:
    """One row per run: a small Parquet file under `runs_table`, or a row appended to a table."""
    if not runs_table:
        return
    if runs_table.startswith("table:"):
        name = runs_table[len("table:"):]
        spark.createDataFrame([row]).write.mode("append").saveAsTable(name)
        return
    import pyarrow as pa
    import pyarrow.parquet as pq

    from index import store

    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pylist([row]), buffer)
    name = f"run-{row['started_at'][:19].replace(':', '')}-{row['job']}-{row['run_id']}.parquet"
    store.write_bytes(store.join(runs_table, name), buffer.getvalue())  # hidden until complete
