"""Index benchmark: build-index and search through Spark vs single-process faiss, recall, merge peak RSS.

    .venv/bin/python bench/index.py [--quick] [--build-only] [--sizes N ...] [--work DIR] [--no-md]

For each size (quick: 100k; full: 100k and 1M) of seeded, clustered, L2-normalised 384-d vectors,
written once as an embeddings table: `sparkamp build-index` (factory auto) in-process on local[2]
vs build_empty/train/add_with_ids in this process with 2 faiss threads; recall@10 from the manifest
and re-checked here against IndexFlatIP; `sparkamp search` vs raw `index.search` on the same queries.
At the largest size, a `merge: none` build's shards are merged in memory and on disk, each in a child
process whose peak RSS is read. The results replace the script's own section of BENCHMARKS.md
(`--quick`: 100k vectors, 2,000 queries, printed only). `--build-only` measures the builds alone (Spark
stage by stage vs one process, with and without the one-process cost of the recall ground truth) and
writes its own section, `## bench/index.py --build-only`.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)

from bench.index_report import CLUSTERS, DIM, JOB, NOISE, RAW, build_report, report, update_section  # noqa: E402
from index import blas, factory, searcher, shards, store  # noqa: E402

log = logging.getLogger("bench.index")
SEED, K, CHUNK, TICK = 0, 10, 100_000, os.sysconf("SC_CLK_TCK")


# ---- data ---------------------------------------------------------------------------------------

def clustered(rng: np.random.Generator, centres: np.ndarray, n: int) -> np.ndarray:
    """[n, DIM] float32 unit vectors: a random centre plus Gaussian noise (as tests/test_index.py)."""
    x = centres[rng.integers(0, len(centres), n)] + NOISE * rng.normal(size=(n, DIM))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def write_table(folder: Path, vectors: np.ndarray, first_id: int = 0) -> None:
    """One Parquet file of embeddings rows (id, source, content_hash, model, embedding, status, error)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    n = len(vectors)
    ids = pa.array([f"v{first_id + i:08d}" for i in range(n)])
    offsets = pa.array(np.arange(0, vectors.size + 1, DIM, dtype=np.int32))
    table = pa.table({"id": ids, "source": ids, "content_hash": ids,
                      "model": pa.array(["synthetic-384"] * n), "status": pa.array(["ok"] * n),
                      "embedding": pa.ListArray.from_arrays(offsets, pa.array(vectors.reshape(-1))),
                      "error": pa.nulls(n, pa.string())})
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, folder / f"part-{first_id // CHUNK:05d}.parquet", row_group_size=32_768)


def make_data(work: Path, n: int, queries: int) -> tuple[np.ndarray, np.ndarray]:
    """Writes `n` vectors as work/emb-<n>/ chunk by chunk and `queries` held-out ones as work/q-<n>/."""
    centres = np.random.default_rng(SEED).normal(size=(CLUSTERS, DIM))
    vectors = np.empty((n, DIM), np.float32)
    for start in range(0, n, CHUNK):
        end = min(n, start + CHUNK)
        vectors[start:end] = clustered(np.random.default_rng([SEED, start]), centres, end - start)
        write_table(work / f"emb-{n}", vectors[start:end], start)
    held_out = clustered(np.random.default_rng([SEED, 1, 0]), centres, queries)
    write_table(work / f"q-{n}", held_out, 10**8)  # ids that cannot clash with the indexed ones
    return vectors, held_out


# ---- measurements ---------------------------------------------------------------------------------

def sparkamp(work: Path, *argv: str) -> float:
    """Wall seconds of one `sparkamp` job run in-process (`jobs.cli.main`) on the running session."""
    from jobs import cli

    start = time.perf_counter()
    code = cli.main([*argv, "--set", f"warehouse={work / 'wh'}", "--set", f"runs_table={work / 'runs'}"])
    if code != 0:
        raise RuntimeError(f"sparkamp {argv[0]} exited with {code}")
    return time.perf_counter() - start


def spark_build(work: Path, n: int, out: str, *extra: str) -> tuple[float, dict]:
    """Seconds of `sparkamp build-index` over work/emb-<n>, and the manifest it wrote."""
    seconds = sparkamp(work, "build-index", "--embeddings", str(work / f"emb-{n}"), "--output", out, *extra)
    return seconds, json.loads(Path(out, "manifest.json").read_text())


def single_build(vectors: np.ndarray, factory_string: str, train_size: int) -> dict[str, float]:
    """build_empty → train on a seeded sample of train_size → add_with_ids, 2 faiss threads."""
    import faiss

    faiss.omp_set_num_threads(2)
    index = factory.build_empty(factory_string, DIM, "ip")
    start = time.perf_counter()
    if not index.is_trained:
        rows = np.random.default_rng(SEED).choice(len(vectors), min(train_size, len(vectors)), False)
        factory.train(index, vectors[np.sort(rows)], SEED)
    trained = time.perf_counter()
    index.add_with_ids(vectors, np.arange(len(vectors), dtype=np.int64))
    done = time.perf_counter()
    return {"train": trained - start, "add": done - trained, "total": done - start}


def single_ground_truth(vectors: np.ndarray, queries: int, k: int = K) -> float:
    """Seconds of the exact top-k of `queries` seeded sample rows over every vector, 2 faiss threads: the
    ground truth a build measures recall@10 against (build-index's default recall_queries is 1,000)."""
    import faiss

    faiss.omp_set_num_threads(2)
    sample = vectors[np.sort(np.random.default_rng(SEED + 1).choice(len(vectors), queries, False))]
    start = time.perf_counter()
    faiss.knn(sample, vectors, k, metric=faiss.METRIC_INNER_PRODUCT)
    return time.perf_counter() - start


def stock_child(path: str, factory_string: str, train_size: int, queries: int) -> None:
    """--stock-child: single_build and single_ground_truth of the vectors in `path` (.npy) in a process that
    imported faiss before sparkamp's `index` (as `python -c "import faiss; ..."` launches it), so faiss runs on
    the BLAS kernels its bundled OpenBLAS detects itself: faiss as installed. Prints their JSON."""
    vectors = np.load(path)
    result = single_build(vectors, factory_string, train_size)
    print(json.dumps({"single": result, "truth_s": single_ground_truth(vectors, queries),
                      "kernels": blas.faiss_kernels()}))


def stock_build(work: Path, vectors: np.ndarray, factory_string: str, train_size: int, queries: int) -> dict:
    """single_build + ground truth of `vectors` by faiss as installed, in a child process (stock_child)."""
    path = work / "vectors.npy"
    np.save(path, vectors)
    code = ("import faiss, runpy, sys; sys.argv = sys.argv[1:]; "  # faiss first: its own BLAS detection
            "runpy.run_path(sys.argv[0], run_name='__main__')")
    argv = [sys.executable, "-c", code, str(Path(__file__).resolve()), "--stock-child", str(path), factory_string,
            str(train_size), str(queries)]
    done = subprocess.run(argv, capture_output=True, text=True, check=True)
    path.unlink()
    return json.loads(done.stdout.strip().splitlines()[-1])


def verify_recall(folder: str, vectors: np.ndarray, queries: np.ndarray) -> float:
    """recall@10 of the published index (its tuned nprobe) vs IndexFlatIP over the same vectors."""
    import faiss

    faiss.omp_set_num_threads(2)
    exact = faiss.IndexFlatIP(DIM)
    exact.add(vectors)
    truth = exact.search(queries, K)
    scores, names = searcher.search(searcher.load(folder), queries, K)
    found = np.array([[int(name[1:]) if name else -1 for name in row] for row in names])
    return searcher.recall_at_k(truth, (scores, found), K)


def search_job(work: Path, n: int, folder: str, *extra: str) -> tuple[float, float]:
    """Seconds of `sparkamp search` with work/q-<n>, and of its own `search + write` stage."""
    import pyarrow.parquet as pq

    seconds = sparkamp(work, "search", "--index", folder, "--queries", str(work / f"q-{n}"), "--k", str(K),
                       "--output", str(work / f"nb-{n}"), *extra)
    last = max((r for r in pq.read_table(work / "runs").to_pylist() if r["job"] == "search"),
               key=lambda r: r["started_at"])
    return seconds, json.loads(last["stages"])["search + write"]


def compare_search(work: Path, n: int, folder: str, queries: np.ndarray) -> dict[str, Any]:
    """Best of 2 interleaved rounds: the job (defaults; num_partitions=2) vs raw index.search, 2 threads."""
    import faiss
    from pyspark.sql import SparkSession

    spark = SparkSession.getActiveSession()
    partitions = spark.read.parquet(str(work / f"q-{n}")).select("id").rdd.glom().map(len).collect()
    start = time.perf_counter()
    loaded = searcher.load(folder)
    load_s = time.perf_counter() - start
    best: dict[str, float] = {}
    for _ in range(2):
        job_s, stage_s = search_job(work, n, folder)
        split_s = search_job(work, n, folder, "--set", "num_partitions=2")[0]
        faiss.omp_set_num_threads(2)
        start = time.perf_counter()
        searcher.search_ids(loaded, queries, K)
        times = {JOB: job_s, "job, its `search + write` stage": stage_s,
                 "job with num_partitions=2, end to end": split_s, RAW: time.perf_counter() - start}
        best = {k: min(v, best.get(k, v)) for k, v in times.items()}
    return {"partitions": partitions, "load_s": load_s, "seconds": best}


def merge_child(variant: str, folder: str) -> None:
    """Runs in a fresh process: merges the shards of `folder` and prints its seconds and VmHWM."""
    scratch = tempfile.mkdtemp(prefix="bench-merge-")
    base = proc_status(os.getpid())["VmRSS"]
    trained = store.read_bytes(os.path.join(folder, "trained.faiss"))
    paths = sorted(str(p) for p in Path(folder, "shards").glob("*.faiss"))
    start = time.perf_counter()
    if variant == "memory":
        merged = shards.merge_in_memory(trained, shards.read_shards(paths))
    else:
        merged = shards.merge_on_disk(trained, paths, os.path.join(scratch, "index.ivfdata"))
    shards.write_index(merged, os.path.join(scratch, "index.faiss"))
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "base": base, "hwm": proc_status(os.getpid())["VmHWM"]}))
    shutil.rmtree(scratch)


def proc_status(pid: int) -> dict[str, float]:
    """The kB lines of /proc/<pid>/status, in MiB."""
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    pairs = (line.split(":", 1) for line in lines)
    return {k: int(v.split()[0]) / 1024 for k, v in pairs if v.endswith("kB")}


def measure_merge(folder: str, variant: str) -> dict[str, float]:
    """A child process per variant; this process samples its RssAnon / RssFile+RssShmem every 20 ms."""
    child = subprocess.Popen([sys.executable, __file__, "--merge-child", variant, folder],
                             stdout=subprocess.PIPE, text=True)
    anon = mapped = 0.0
    while child.poll() is None:
        try:
            status = proc_status(child.pid)
            anon = max(anon, status["RssAnon"])
            mapped = max(mapped, status["RssFile"] + status["RssShmem"])
        except (FileNotFoundError, KeyError, ProcessLookupError):
            pass
        time.sleep(0.02)
    if child.returncode != 0:
        raise RuntimeError(f"merge child ({variant}) exited with {child.returncode}")
    result = json.loads(child.stdout.read().strip().splitlines()[-1])
    sizes = [p.stat().st_size / 2**20 for p in Path(folder, "shards").glob("*.faiss")]
    return {**result, "anon": anon, "mapped": mapped, "largest": max(sizes), "total": sum(sizes),
            "ratio": result["hwm"] / max(sizes)}


class OtherLoad(threading.Thread):
    """CPU seconds used by processes outside this benchmark's process tree (the machine is shared)."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.total, self.by_phase, self._last = 0.0, {}, cpu_by_pid()[1]
        self.start()

    def run(self) -> None:
        while True:
            time.sleep(2)
            parents, cpu = cpu_by_pid()
            mine, grew = {os.getpid()}, True
            while grew:
                children = {pid for pid, ppid in parents.items() if ppid in mine} - mine
                mine, grew = mine | children, bool(children)
            self.total += sum(c - self._last.get(pid, 0.0) for pid, c in cpu.items() if pid not in mine)
            self._last = cpu

    @contextmanager
    def during(self, phase: str) -> Iterator[None]:
        start = self.total
        yield
        self.by_phase[phase] = self.total - start


def cpu_by_pid() -> tuple[dict[int, int], dict[int, float]]:
    """({pid: parent pid}, {pid: CPU seconds so far}) of every process, from /proc/<pid>/stat."""
    parents, cpu = {}, {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        parents[int(stat.parent.name)] = int(fields[1])
        cpu[int(stat.parent.name)] = (int(fields[11]) + int(fields[12])) / TICK
    return parents, cpu


def measure_build(work: Path, n: int, other: OtherLoad) -> dict[str, Any]:
    """--build-only: the Spark build (factory auto, every default), one process's train + add and its
    ground truth, recall re-checked."""
    log.info("%d vectors: writing the embeddings table", n)
    vectors, held_out = make_data(work, n, 1000)
    log.info("%d vectors: sparkamp build-index (factory auto), then single-process", n)
    with other.during(f"{n:,} Spark build"):
        build_s, meta = spark_build(work, n, str(work / f"idx-{n}"))
    with other.during(f"{n:,} single build"):
        single = single_build(vectors, meta["factory"], meta["config"]["train_size"])
        truth_s = single_ground_truth(vectors, meta["config"]["recall_queries"])
    with other.during(f"{n:,} single build, faiss as installed"):
        stock = stock_build(work, vectors, meta["factory"], meta["config"]["train_size"],
                            meta["config"]["recall_queries"])
    result = {"n": n, "build_s": build_s, "meta": meta, "single": single, "truth_s": truth_s, "stock": stock,
              "kernels": blas.faiss_kernels(), "recall": verify_recall(str(work / f"idx-{n}"), vectors, held_out)}
    shutil.rmtree(work / f"emb-{n}")
    shutil.rmtree(work / f"idx-{n}")
    return result


def measure_size(work: Path, n: int, queries: int, merge: bool, other: OtherLoad) -> dict[str, Any]:
    log.info("%d vectors: writing the embeddings table and %d queries", n, queries)
    vectors, held_out = make_data(work, n, queries)
    log.info("%d vectors: sparkamp build-index (factory auto), then single-process", n)
    with other.during(f"{n:,} Spark build"):
        build_s, meta = spark_build(work, n, str(work / f"idx-{n}"))
    with other.during(f"{n:,} single build"):
        single = single_build(vectors, meta["factory"], meta["config"]["train_size"])
    log.info("%d vectors: recall check and search", n)
    with other.during(f"{n:,} recall and search"):
        result = {"n": n, "build_s": build_s, "meta": meta, "single": single, "queries": queries,
                  "recall": verify_recall(str(work / f"idx-{n}"), vectors, held_out[:1000]),
                  "search": compare_search(work, n, str(work / f"idx-{n}"), held_out)}
    if merge:  # IVF at any size, since merge: ondisk needs inverted lists
        ivf = f"IVF{factory.ivf_lists(n)},Flat"
        log.info("%d vectors: %s build with merge: none, then each merge in a child process", n, ivf)
        with other.during(f"{n:,} merge"):
            result["none_s"] = spark_build(work, n, str(work / f"none-{n}"), "--factory", ivf,
                                           "--set", "merge=none")[0]
            result["merge"] = {v: measure_merge(str(work / f"none-{n}"), v) for v in ("memory", "ondisk")}
        result["merge_factory"] = ivf
    shutil.rmtree(work / f"emb-{n}")
    return result


# ---- running ------------------------------------------------------------------------------------

def start_spark(work: Path) -> Any:
    """local[2] through the project's own session code (Arrow, worker reuse); warmed up, not timed."""
    from jobs import build_index
    from jobs.core import session

    cfg = build_index.Config(master="local[2]", warehouse=str(work / "wh"),
                             spark={"spark.ui.enabled": "false", "spark.ui.showConsoleProgress": "false"})
    spark = session.get_session(cfg, "bench", metastore=False)[0]
    make_data(work, 2000, 100)
    spark_build(work, 2000, str(work / "idx-2000"))
    search_job(work, 2000, str(work / "idx-2000"))
    return spark


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="100k vectors and 2,000 queries only")
    parser.add_argument("--sizes", type=int, nargs="+", help="vector counts (default 100000 1000000)")
    parser.add_argument("--build-only", action="store_true",
                        help="the builds alone (Spark vs one process); its own BENCHMARKS.md section")
    parser.add_argument("--queries", type=int, help="search queries (default 10,000; quick 2,000)")
    parser.add_argument("--work", type=Path, help="scratch folder (default: a temporary one)")
    parser.add_argument("--no-md", action="store_true", help="print only; leave BENCHMARKS.md alone")
    parser.add_argument("--merge-child", nargs=2, metavar=("VARIANT", "FOLDER"), help=argparse.SUPPRESS)
    parser.add_argument("--stock-child", nargs=4, metavar=("NPY", "FACTORY", "TRAIN", "QUERIES"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.argv = argv
    args.sizes = args.sizes or ([100_000] if args.quick else [100_000, 1_000_000])
    args.queries = args.queries or (2_000 if args.quick else 10_000)
    return args


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    if args.merge_child:
        return merge_child(*args.merge_child)
    if args.stock_child:
        path, factory_string, train, queries = args.stock_child
        return stock_child(path, factory_string, int(train), int(queries))
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    log.setLevel(logging.INFO)
    with tempfile.TemporaryDirectory(prefix="bench-index-", dir=args.work) as tmp:
        work = Path(tmp)
        spark, other = start_spark(work), OtherLoad()
        try:
            results = [measure_build(work, n, other) if args.build_only else
                       measure_size(work, n, args.queries, n == max(args.sizes), other) for n in args.sizes]
        finally:
            spark.stop()
    body = build_report(args, results, other) if args.build_only else report(args, results, other)
    print(body)
    heading = "## bench/index.py" + (" --build-only" if args.build_only else "")
    if not (args.no_md or args.quick):  # only the full run owns the BENCHMARKS.md section
        update_section(ROOT / "BENCHMARKS.md", heading, body)
        log.info("updated the %r section of %s", heading, ROOT / "BENCHMARKS.md")


if __name__ == "__main__":
    main(sys.argv[1:])
