"""A real Spark standalone cluster on 127.0.0.1 (pyspark's own spark-class), and spark-submit to it."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pyspark

SPARK_HOME = Path(pyspark.__file__).resolve().parent
ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spark_env() -> dict:
    env = dict(os.environ, SPARK_LOCAL_IP="127.0.0.1", PYSPARK_PYTHON=sys.executable,
               PYSPARK_DRIVER_PYTHON=sys.executable, SPARK_HOME=str(SPARK_HOME), HF_HUB_OFFLINE="1")
    env.pop("PYSPARK_GATEWAY_PORT", None)  # the test process's own session must not leak in
    env.pop("PYSPARK_GATEWAY_SECRET", None)
    return env


class StandaloneCluster:
    """One master and `workers` workers (1 core, 2 GB each), each its own process group, all stopped
    by pid in `stop()` even when a test failed."""

    def __init__(self, folder: Path, workers: int = 2):
        self.folder = folder
        self.port, self.ui_port = free_port(), free_port()
        self.url = f"spark://127.0.0.1:{self.port}"
        self.processes: dict[str, subprocess.Popen] = {}
        self.count = workers

    def _launch(self, name: str, cls: str, *args: str) -> None:
        log = open(self.folder / f"{name}.log", "wb")
        self.processes[name] = subprocess.Popen(
            [str(SPARK_HOME / "bin" / "spark-class"), cls, *args], stdout=log, stderr=subprocess.STDOUT,
            env=spark_env(), cwd=self.folder, start_new_session=True)

    def start(self, timeout: float = 90) -> "StandaloneCluster":
        self._launch("master", "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                     "--port", str(self.port), "--webui-port", str(self.ui_port))
        for i in range(self.count):
            work = self.folder / f"work-{i}"
            work.mkdir(exist_ok=True)
            self._launch(f"worker-{i}", "org.apache.spark.deploy.worker.Worker", self.url, "--host", "127.0.0.1",
                         "--cores", "1", "--memory", "2g", "--webui-port", str(free_port()),
                         "--work-dir", str(work))
        deadline = time.time() + timeout
        while time.time() < deadline:
            if len(self.alive_workers()) == self.count:
                return self
            for name, proc in self.processes.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited {proc.returncode}: {self.log(name)[-2000:]}")
            time.sleep(1)
        raise TimeoutError(f"{self.count} workers did not register in {timeout}s: {self.state()}")

    def state(self) -> dict:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.ui_port}/json/", timeout=5) as r:
                return json.load(r)
        except OSError:
            return {}

    def alive_workers(self) -> list[dict]:
        return [w for w in self.state().get("workers", []) if w.get("state") == "ALIVE"]

    def log(self, name: str) -> str:
        return (self.folder / f"{name}.log").read_text(errors="replace")

    def kill_worker(self, index: int) -> None:
        """SIGKILL of the worker JVM alone (its executor notices and exits, as on a lost machine)."""
        os.kill(self.processes[f"worker-{index}"].pid, signal.SIGKILL)

    def stop(self) -> None:
        for proc in self.processes.values():
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.killpg(proc.pid, sig)  # the JVM and everything it started (executors, Python)
                except ProcessLookupError:
                    break
                try:
                    proc.wait(timeout=10)
                    break
                except subprocess.TimeoutExpired:
                    continue


def submit(cluster: StandaloneCluster, job: str, *args: str, timeout: float = 600,
           background: bool = False, conf: dict | None = None):
    """`spark-submit --master <cluster> --py-files dist/sparkamp.zip jobs/<job>.py args`, as users run it."""
    settings = {"spark.executor.memory": "1g", "spark.ui.showConsoleProgress": "false", **(conf or {})}
    command = [str(SPARK_HOME / "bin" / "spark-submit"), "--master", cluster.url,
               "--py-files", str(ROOT / "dist" / "sparkamp.zip"),
               *[item for name, value in settings.items() for item in ("--conf", f"{name}={value}")],
               str(ROOT / "jobs" / f"{job}.py"), *args]
    out = open(cluster.folder / f"submit-{job}-{time.time():.0f}.log", "wb")
    proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=spark_env(), cwd=cluster.folder,
                            start_new_session=True)
    if background:
        return proc, Path(out.name)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise
