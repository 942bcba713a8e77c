"""Scale benchmark: seconds per item and peak RSS of embed-texts, embed-images, build-index, search,
dedup and unique as the corpus grows, each job run as users run it (`sparkamp <job> --set master=local[2]`).

    .venv/bin/python bench/scale.py [--quick] [--vectors N ...] [--texts N ...] [--images N ...]
                                    [--jobs JOB,...] [--shard-bytes SIZE] [--factory F] [--memory-budget SIZE]
                                    [--work DIR] [--no-md] [--save FILE] [--render FILE]

e.g. the sharded-index check from 1M to 4M vectors, without the embedding jobs:

    .venv/bin/python bench/scale.py --vectors 1000000 4000000 --jobs build-index,search,dedup,unique

Vectors (build-index; search: k=10 other items for a tenth of the items; dedup, unique: all items) are
bench/index.py's seeded clustered 384-d vectors with 1% planted near-duplicates; texts are WordNet
noun glosses (a seeded sample, or all 82,115); images are Fashion-MNIST PNGs (t10k, then train).
Each job is a child process whose tree (the Python driver, its JVM, the Python worker daemon and
workers) is polled every 0.2 s for per-process peak VmHWM. Full: 10k/100k/1M vectors, 10k/82k
texts, 10k/70k images. `--quick` (2k/10k vectors, 500/2k texts, 200/800 images) runs every job in
this process on one running session instead (no JVM start per job; peaks reset between jobs) to
finish in about 3 minutes. Each mode rewrites its own section of BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)

from bench.index import CHUNK, OtherLoad, clustered, cpu_by_pid, proc_status, write_table  # noqa: E402
from bench.index_report import CLUSTERS, DIM  # noqa: E402
from bench.scale_report import JOBS, THRESHOLD, Plan, Results, Run, report, update_section  # noqa: E402

log = logging.getLogger("bench.scale")
SEED, K, POLL = 0, 10, 0.2
QUERY_FRACTION, DUP_FRACTION = 0.1, 0.01
DUP_NOISE = 0.01  # per dimension, on a unit 384-d vector: a planted copy has cosine ≈ 0.98
SPARKAMP = str(ROOT / ".venv" / "bin" / "sparkamp")
VECTOR_JOBS = ("build-index", "search", "dedup", "unique")


# ---- inputs -------------------------------------------------------------------------------------

def write_vectors(folder: Path, n: int) -> int:
    """n unit vectors as bench/index.py writes them (same seeds, 100k-row files), except that the
    last 1% of each file are near copies of earlier rows of the file; the first QUERY_FRACTION of
    each file is also written to `<folder>-queries`. Returns the planted copies."""
    centres = np.random.default_rng(SEED).normal(size=(CLUSTERS, DIM))
    planted = 0
    for start in range(0, n, CHUNK):
        rng = np.random.default_rng([SEED, start])
        x = clustered(rng, centres, min(CHUNK, n - start))
        dups = int(len(x) * DUP_FRACTION)
        if dups:
            copies = x[rng.integers(0, len(x) - dups, dups)] + DUP_NOISE * rng.normal(size=(dups, DIM))
            x[-dups:] = copies / np.linalg.norm(copies, axis=1, keepdims=True)
        write_table(folder, x, start)
        write_table(folder.with_name(folder.name + "-queries"), x[:int(len(x) * QUERY_FRACTION)], start)
        planted += dups
    return planted


def write_texts(path: Path, n: int) -> tuple[int, float]:
    """A JSON Lines file (id, text) of a seeded sample of n WordNet noun glosses (n ≥ 82,115: all).
    Returns (texts, mean characters)."""
    from jobs.samples.datasets import wordnet_nouns

    rows = wordnet_nouns()
    chosen = np.sort(np.random.default_rng(SEED).permutation(len(rows))[:n])
    with path.open("w", encoding="utf-8") as fh:
        for i in chosen:
            fh.write(json.dumps({"id": rows[i]["id"], "text": rows[i]["text"]}) + "\n")
    return len(chosen), float(np.mean([len(rows[i]["text"]) for i in chosen]))


def write_images(folder: Path, n: int) -> tuple[int, float]:
    """n Fashion-MNIST PNGs `<class>/<split>-<i>.png`: a seeded sample of t10k, then of train.
    Returns (images, mean bytes per file)."""
    from PIL import Image

    from jobs.samples.datasets import FASHION_CLASSES, fashion_mnist

    written, size = 0, 0
    for split, count in (("t10k", min(n, 10_000)), ("train", min(max(n - 10_000, 0), 60_000))):
        if not count:
            continue
        pixels, labels = fashion_mnist(count, SEED, split)
        for i, (image, label) in enumerate(zip(pixels, labels)):
            path = folder / FASHION_CLASSES[label] / f"{split}-{i:05d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(255 - image).save(path)
            size += path.stat().st_size
        written += len(pixels)
    return written, size / max(written, 1)


# ---- memory of a process tree ----------------------------------------------------------------------

def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def role(pid: int, root: int, parents: dict[int, int], commands: dict[int, str]) -> str:
    """driver (the sparkamp Python process), jvm, daemon (pyspark.daemon under the JVM), worker
    (a Python process under the JVM or the daemon), or other (launcher shells)."""
    program = Path(commands.get(pid, "").split(" ")[0]).name
    if pid == root:
        return "driver"
    if program == "java":
        return "jvm"
    if "python" not in program:
        return "other"
    parent = Path(commands.get(parents.get(pid, 0), "").split(" ")[0]).name
    return "daemon" if parent == "java" and "pyspark.daemon" in commands[pid] else "worker"


def descendants(root: int, parents: dict[int, int]) -> set[int]:
    """root and every process below it, from {pid: parent pid}."""
    tree, grew = {root}, True
    while grew:
        children = {pid for pid, ppid in parents.items() if ppid in tree} - tree
        tree, grew = tree | children, bool(children)
    return tree


def reset_peaks(root: int) -> None:
    """Resets VmHWM across root's process tree (clear_refs 5): the next job's peaks are its own."""
    for pid in descendants(root, cpu_by_pid()[0]):
        try:
            Path(f"/proc/{pid}/clear_refs").write_text("5")
        except OSError:
            pass


class TreeWatch(threading.Thread):
    """Per-pid peak VmHWM and sampled peak RssAnon (MiB) of a process and its descendants, polled
    every POLL s (VmHWM also counts touched pages of memory-mapped files; RssAnon does not)."""

    def __init__(self, root: int) -> None:
        super().__init__(daemon=True)
        self.root, self.peaks, self.roles = root, {}, {}
        self._done = threading.Event()
        self.start()

    def run(self) -> None:
        while not self._done.is_set():
            self.poll()
            self._done.wait(POLL)

    def poll(self) -> None:
        parents = cpu_by_pid()[0]
        tree = descendants(self.root, parents)
        commands = {pid: cmdline(pid) for pid in tree | {parents.get(p, 0) for p in tree}}
        for pid in tree:
            try:
                status = proc_status(pid)
            except (OSError, ProcessLookupError):
                continue
            old = self.peaks.get(pid, (0.0, 0.0))
            self.peaks[pid] = (max(old[0], status.get("VmHWM", 0.0)), max(old[1], status.get("RssAnon", 0.0)))
            if commands.get(pid):  # the latest: launch scripts exec java; an exited one has none
                self.roles[pid] = role(pid, self.root, parents, commands)

    def stop(self) -> dict[str, list[list[float]]]:
        """{role: [[peak VmHWM, peak RssAnon] MiB of each process of that role]}."""
        self._done.set()
        self.join()
        by_role: dict[str, list[list[float]]] = {}
        for pid, peaks in self.peaks.items():
            by_role.setdefault(self.roles.get(pid, "other"), []).append(list(peaks))
        return by_role


# ---- running the jobs -------------------------------------------------------------------------------

def sparkamp(work: Path, job: str, n: int, *argv: str, inline: bool = False) -> Run:
    """Runs `sparkamp <job>` on local[2], watching the process tree; its runs-table row. A child
    process, or (inline) `jobs.cli.main` in this process on its running session."""
    import pyarrow.parquet as pq

    command = [SPARKAMP, job, *argv, "--set", "master=local[2]", "--set", f"warehouse={work / 'wh'}",
               "--set", f"runs_table={work / 'runs'}", "--set", "log_level=WARNING"]
    env = {**os.environ, "PYSPARK_PYTHON": str(ROOT / ".venv" / "bin" / "python")}
    start = time.perf_counter()
    if inline:
        from jobs import cli

        reset_peaks(os.getpid())
        watch = TreeWatch(os.getpid())
        code = cli.main(command[1:])
    else:
        with open(work / f"{job}-{n}.log", "w") as out:
            child = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
            watch = TreeWatch(child.pid)
            code = child.wait()
    wall, rss = time.perf_counter() - start, watch.stop()
    if code != 0:
        raise RuntimeError(f"sparkamp {job} exited with {code}; see {work / f'{job}-{n}.log'}")
    row = max((r for r in pq.read_table(work / "runs").to_pylist() if r["job"] == job),
              key=lambda r: r["started_at"])
    return Run(job, n, wall, row["seconds"], json.loads(row["stages"]), rss, row["rows_ok"],
               json.loads(row["stats"]))


def has_precision_key() -> bool:
    """Whether the embedding jobs take `precision` (bf16 is being added to them)."""
    shown = subprocess.run([SPARKAMP, "embed-images", "--help"], capture_output=True, text=True).stdout
    return "  precision " in shown


def vector_runs(work: Path, n: int, plan: Plan) -> list[Run]:
    """Of `plan.jobs`: build-index, search (k=10 others of a tenth of the items), dedup and unique (all items,
    with that index) over n vectors. The index is built whenever a job needs it, kept only if asked for."""
    emb, idx = work / f"emb-{n}", str(work / f"idx-{n}")
    queries = emb.with_name(emb.name + "-queries")
    plan.planted[n] = write_vectors(emb, n)
    shard_bytes = ["--set", f"shard_bytes={plan.shard_bytes}"] if plan.shard_bytes else []
    shard_bytes += ["--set", f"factory={plan.factory}"] if plan.factory else []
    shard_bytes += ["--set", f"memory_budget={plan.memory_budget}"] if plan.memory_budget else []
    build = sparkamp(work, "build-index", n, "--embeddings", str(emb), "--output", idx, *shard_bytes,
                     inline=plan.inline)
    meta = json.loads(Path(idx, "manifest.json").read_text())
    size = sum(f.stat().st_size for f in Path(idx).rglob("*") if f.is_file()) / 2**20
    build.stats.update(factory=meta["factory"], nprobe=meta["nprobe"], index_mib=size, merge=meta["merge"],
                       shard_mib=max((s.get("bytes", 0) for s in meta["shards"]), default=0) / 2**20)
    runs = [build] if "build-index" in plan.jobs else []
    log.info("measured: %s", json.dumps(dataclasses.asdict(build), default=str))
    argv = {"search": ["--index", idx, "--queries", str(queries), "--k", str(K), "--exclude-self"],
            "dedup": ["--embeddings", str(emb), "--index", idx, "--threshold", str(THRESHOLD)],
            "unique": ["--embeddings", str(emb), "--index", idx]}
    for job in (j for j in VECTOR_JOBS[1:] if j in plan.jobs):
        runs.append(sparkamp(work, job, n, *argv[job], "--output", str(work / f"{job}-out-{n}"), inline=plan.inline))
        runs[-1].stats.update(index_mib=size, merge=meta["merge"], shards=len(meta["shards"]))
        log.info("measured: %s", json.dumps(dataclasses.asdict(runs[-1]), default=str))  # kept if the run is cut
    for folder in (emb, queries, Path(idx), *(work / f"{job}-out-{n}" for job in VECTOR_JOBS)):
        shutil.rmtree(folder, ignore_errors=True)
    return runs


def embed_run(work: Path, job: str, n: int, plan: Plan) -> Run:
    """embed-texts over n WordNet glosses or embed-images over n Fashion-MNIST PNGs."""
    source = work / (f"texts-{n}.jsonl" if job == "embed-texts" else f"images-{n}")
    if job == "embed-texts":
        n, plan.text_chars = write_texts(source, n)
    else:
        n, plan.image_bytes = write_images(source, n)
    extra = ["--set", f"precision={plan.precision}"] if plan.precision != "fp32" else []
    run = sparkamp(work, job, n, "--input", str(source), "--output", str(work / f"out-{job}-{n}"), *extra,
                   inline=plan.inline)
    shutil.rmtree(work / f"out-{job}-{n}")
    shutil.rmtree(source) if source.is_dir() else source.unlink()
    return run


def start_session(work: Path) -> Any:
    """--quick: one local[2] session that every job reuses (no JVM start per job)."""
    from jobs import build_index
    from jobs.core import session

    cfg = build_index.Config(master="local[2]", warehouse=str(work / "wh"),
                             spark={"spark.ui.showConsoleProgress": "false"})
    return session.get_session(cfg, "bench-scale", metastore=False)[0]


def measure(work: Path, plan: Plan, other: OtherLoad) -> list[Run]:
    spark = start_session(work) if plan.inline else None
    try:
        if spark is not None:  # the JVM's first-job costs land here, not on the smallest size
            vector_runs(work, 1_000, dataclasses.replace(plan, planted={}))
        return measure_all(work, plan, other)
    finally:
        if spark is not None:
            spark.stop()


def measure_all(work: Path, plan: Plan, other: OtherLoad) -> list[Run]:
    runs = []
    for n in plan.vectors if set(VECTOR_JOBS) & set(plan.jobs) else []:
        log.info("%d vectors: %s", n, ", ".join(j for j in VECTOR_JOBS if j in plan.jobs))
        with other.during(f"{n:,} vectors"):
            runs += vector_runs(work, n, plan)
    for job, sizes in (("embed-texts", plan.texts), ("embed-images", plan.images)):
        for n in sizes if job in plan.jobs else []:
            log.info("%s: %d items", job, n)
            with other.during(f"{job} {n:,}"):
                runs.append(embed_run(work, job, n, plan))
    return runs


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2k/10k vectors, 500/2k texts, 200/800 images")
    parser.add_argument("--vectors", type=int, nargs="*", help="vector counts (default 10k 100k 1M)")
    parser.add_argument("--texts", type=int, nargs="*", help="WordNet glosses (default 10k, all 82,115)")
    parser.add_argument("--images", type=int, nargs="*", help="Fashion-MNIST images (default 10k, all 70k)")
    parser.add_argument("--jobs", default=",".join(JOBS),
                        help=f"comma-separated jobs to measure (default all: {','.join(JOBS)})")
    parser.add_argument("--shard-bytes", default="", help="build-index's shard_bytes (default: the job's)")
    parser.add_argument("--factory", default="", help="build-index's factory at every size (default: auto, "
                        "which changes with the size)")
    parser.add_argument("--memory-budget", default="", help="build-index's memory_budget (default: the job's; "
                        "an index above it is kept as shards, e.g. 1G shards a 1M x 384-d IVF,Flat)")
    parser.add_argument("--work", type=Path, help="scratch folder (default: a temporary one)")
    parser.add_argument("--no-md", action="store_true", help="print only; leave BENCHMARKS.md alone")
    parser.add_argument("--save", type=Path, help="also write the measurements to this JSON file")
    parser.add_argument("--render", type=Path, help="measure nothing: report a --save file")
    args = parser.parse_args(argv)
    args.jobs = [j.strip() for j in args.jobs.split(",") if j.strip()]
    if set(args.jobs) - set(JOBS):
        parser.error(f"--jobs: unknown {sorted(set(args.jobs) - set(JOBS))}; choose from {', '.join(JOBS)}")
    quick = args.quick
    args.vectors = args.vectors if args.vectors is not None else [2_000, 10_000] if quick else [
        10_000, 100_000, 1_000_000]
    args.texts = args.texts if args.texts is not None else [500, 2_000] if quick else [10_000, 82_115]
    args.images = args.images if args.images is not None else [200, 800] if quick else [10_000, 70_000]
    args.texts = args.texts if "embed-texts" in args.jobs else []
    args.images = args.images if "embed-images" in args.jobs else []
    return args


def main(argv: list[str]) -> None:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    log.setLevel(logging.INFO)
    args = parse_args(argv)
    if args.render:
        results = Results.load(args.render)
    else:
        plan = Plan(args.vectors, args.texts, args.images, "bf16" if has_precision_key() else "fp32",
                    inline=args.quick, jobs=args.jobs, shard_bytes=args.shard_bytes,
                    factory=args.factory, memory_budget=args.memory_budget)
        start, other = time.perf_counter(), OtherLoad()
        with tempfile.TemporaryDirectory(prefix="bench-scale-", dir=args.work) as tmp:
            runs = measure(Path(tmp), plan, other)
        results = Results(argv, plan, runs, other.total, other.by_phase, time.perf_counter() - start,
                          datetime.datetime.now().astimezone().isoformat(timespec="minutes"))
        if args.save:
            args.save.write_text(json.dumps(dataclasses.asdict(results), indent=1))
    body = report(results)
    print(body)
    if not args.no_md:
        heading = "## bench/scale.py" + (" --quick" if "--quick" in results.argv else "")
        update_section(ROOT / "BENCHMARKS.md", heading, body)
        log.info("updated the %r section of %s", heading, ROOT / "BENCHMARKS.md")


if __name__ == "__main__":
    main(sys.argv[1:])
