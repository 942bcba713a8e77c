"""'Apply to the table': the playground's labels given to `assign-labels`, run as a child process, watched."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from jobs.app.parquet import ParquetTable
from udfs.label_sets import LabelSet

CHECKOUT = Path(__file__).resolve().parents[2]
STAGES = ("fit head", "count inputs", "score + write")  # assign-labels' timed stages, in order
_STAGE = re.compile(r"assign-labels: (.+?) (\.\.\.|done in)")
_BAR = re.compile(r"\[Stage \d+:[^\]]*\((\d+) \+ \d+\) / (\d+)\]")


@dataclass(frozen=True)
class ApplyOptions:
    embeddings: str       # the text embeddings table to label
    output: str           # a folder: each run writes its labels table under it
    warehouse: str        # local: the runs' label-set files, warehouse of the child jobs
    runs_table: str
    master: str = ""
    zmap_vocab_size: int = 20_000


class Busy(RuntimeError):
    """A run is already going: one Spark job at a time on this machine."""


@dataclass
class Task:
    id: str
    method: str
    output: str
    command: list[str]
    state: str = "running"            # running | done | failed
    stage: str = "starting Spark"
    stages_done: int = 0
    spark: tuple[int, int] = (0, 0)   # tasks done / tasks of the current Spark stage
    progress: float = 0.0             # 0..1, never going back
    lines: deque = field(default_factory=lambda: deque(maxlen=40))
    started: float = field(default_factory=time.time)
    seconds: float = 0.0

    def advance(self) -> None:
        """assign-labels' stages done, plus the running Spark stage's share of the current one."""
        within = self.spark[0] / self.spark[1] if self.spark[1] else 0.0
        self.progress = max(self.progress, min(0.99, (self.stages_done + within) / len(STAGES)))

    def view(self) -> dict:
        errors = [ln for ln in self.lines if " ERROR " in ln or "error" in ln.lower()]
        return {"task": self.id, "method": self.method, "state": self.state, "stage": self.stage,
                "progress": round(self.progress, 3), "spark_tasks": list(self.spark), "output": self.output,
                "seconds": round(self.seconds or time.time() - self.started, 1),
                "errors": errors[-5:] if self.state == "failed" else [], "log": list(self.lines)[-8:]}


class ApplyRunner:
    def __init__(self, opts: ApplyOptions):
        self.opts = opts
        self.tasks: dict[str, Task] = {}
        self._lock = threading.Lock()

    def start(self, method: str, label_set: LabelSet | None, head: str = "") -> Task:
        """Starts `sparkamp assign-labels` over the table (zero-shot/zmap with `label_set`, or the saved
        `head`); Busy while another run is going."""
        with self._lock:
            if any(t.state == "running" for t in self.tasks.values()):
                raise Busy("a labelling run is going; wait for it to finish")
            task_id = uuid.uuid4().hex[:12]
            output = os.path.join(self.opts.output, f"labels-{task_id}")
            command = [sys.executable, "-m", "jobs.cli", "assign-labels", "--embeddings", self.opts.embeddings,
                       "--output", output, "--set", f"warehouse={self.opts.warehouse}",
                       "--set", f"runs_table={self.opts.runs_table}", "--top-k", "3"]
            command += ["--set", f"master={self.opts.master}"] if self.opts.master else []
            if method == "head":
                command += ["--head", head]
            else:
                command += ["--method", method, "--labels", self._write_label_set(task_id, label_set)]
                command += ["--set", f"vocab_size={self.opts.zmap_vocab_size}"] if method == "zmap" else []
            task = Task(task_id, method, output, command)
            self.tasks[task_id] = task
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(CHECKOUT), os.environ.get("PYTHONPATH")]))}
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
        threading.Thread(target=self._watch, args=(task, process), name=f"apply-{task_id}", daemon=True).start()
        return task

    def _write_label_set(self, task_id: str, label_set: LabelSet) -> str:
        """The run's label set as YAML under warehouse/serve/label_sets (kept: the run can be repeated)."""
        folder = Path(self.opts.warehouse) / "serve" / "label_sets"
        folder.mkdir(parents=True, exist_ok=True)
        data = {"templates": list(label_set.templates),
                "labels": [{k: v for k, v in (("name", lb.name), ("description", lb.description),
                                              ("keywords", list(lb.keywords))) if v} for lb in label_set.labels]}
        path = folder / f"{task_id}.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
        return str(path)

    def _watch(self, task: Task, process: subprocess.Popen) -> None:
        """Reads the child's log and Spark's progress bar (both on stderr; the bar redraws with \\r)."""
        pending = b""
        for chunk in iter(lambda: process.stderr.read1(4096), b""):
            *lines, pending = re.split(rb"[\r\n]", pending + chunk)
            for line in lines:
                self._read_line(task, line.decode("utf-8", "replace").strip())
        process.wait()
        task.seconds = time.time() - task.started
        task.state = "done" if process.returncode == 0 else "failed"
        task.progress = 1.0 if process.returncode == 0 else task.progress
        task.stage = "done" if process.returncode == 0 else f"failed (exit code {process.returncode})"

    @staticmethod
    def _read_line(task: Task, line: str) -> None:
        bar = _BAR.search(line)
        if bar:
            task.spark = (int(bar.group(1)), int(bar.group(2)))
            task.advance()
            return
        if not line:
            return
        task.lines.append(line[:300])
        stage = _STAGE.search(line)
        if stage and stage.group(1) in STAGES:
            task.stage = stage.group(1)
            if stage.group(2) == "done in":
                task.stages_done = STAGES.index(stage.group(1)) + 1
                task.spark = (0, 0)
                task.advance()

    def rows(self, task_id: str, limit: int) -> list[dict]:
        """The first `limit` rows of a finished run's labels table."""
        task = self.tasks[task_id]
        table = ParquetTable(task.output, "output")
        return table.page(0, limit, ["id", "label", "score", "rank", "status"]).to_pylist()
