"""Index benchmark: build-index and search through Spark vs single-process faiss, recall, merge peak RSS.

    .venv/bin/python bench/index.py [--quick] [--work DIR] [--no-md]

For each size (quick: 100k; full: 100k and 1M) of seeded, clustered, L2-normalised 384-d vectors,
written once as an embeddings table: `sparkamp build-index` (factory auto) in-process on local[2]
vs build_empty/train/add_with_ids in this process with 2 faiss threads; recall@10 from the manifest
and re-checked here against IndexFlatIP; `sparkamp search` vs raw `index.search` on the same queries.
At the largest size, a `merge: none` build's shards are merged in memory and on disk, each in a child
process whose peak RSS is read. The results replace the script's own section of BENCHMARKS.md
(`--quick`: 100k vectors, 2,000 queries, printed only).
"""
from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)

from index import factory, searcher, shards, store  # noqa: E402

log = logging.getLogger("bench.index")
DIM, CLUSTERS, NOISE, SEED, K, CHUNK = 384, 1000, 0.3, 0, 10, 100_000
STAGES = ("read embeddings", "train", "add shards", "write ids", "merge", "measure recall")
BUILD_TARGET, RECALL_TARGET, SEARCH_TARGET, RSS_TARGET = 1.3, 0.95, 0.8, 1.5


# ---- data ---------------------------------------------------------------------------------------

def clustered(rng: np.random.Generator, centres: np.ndarray, n: int) -> np.ndarray:
    """[n, DIM] float32 unit vectors: a random centre plus Gaussian noise (as tests/test_index.py)."""
    x = centres[rng.integers(0, len(centres), n)] + NOISE * rng.normal(size=(n, DIM))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def write_table(folder: Path, vectors: np.ndarray, first_id: int = 0) -> None:
    """One Parquet file of embeddings rows (id, source, content_hash, model, embedding, status, error)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    ids = pa.array([f"v{first_id + i:08d}" for i in range(len(vectors))])
    offsets = pa.array(np.arange(0, vectors.size + 1, DIM, dtype=np.int32))
    n = len(vectors)
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

def common(work: Path) -> list[str]:
    return ["--set", f"warehouse={work / 'wh'}", "--set", f"runs_table={work / 'runs'}"]


def spark_build(work: Path, n: int, out: str, *extra: str) -> tuple[float, dict]:
    """Wall seconds of `sparkamp build-index` on the running session, and the manifest it wrote."""
    from jobs import cli

    start = time.perf_counter()
    code = cli.main(["build-index", "--embeddings", str(work / f"emb-{n}"), "--output", out,
                     *common(work), *extra])
    seconds = time.perf_counter() - start
    if code != 0:
        raise RuntimeError(f"build-index exited with {code}")
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


def verify_recall(folder: str, vectors: np.ndarray, queries: np.ndarray) -> float:
    """recall@10 of the published index (its tuned nprobe) vs IndexFlatIP over the same vectors."""
    import faiss

    faiss.omp_set_num_threads(2)
    exact = faiss.IndexFlatIP(DIM)
    exact.add(vectors)
    truth = exact.search(queries, K)[1]
    names = searcher.search(searcher.load(folder), queries, K)[1]
    found = np.array([[int(name[1:]) if name else -1 for name in row] for row in names])
    return searcher.recall_at_k(truth, found, K)


def search_job(work: Path, n: int, folder: str, *extra: str) -> tuple[float, float]:
    """Wall seconds of `sparkamp search` on the running session, and of its `search + write` stage."""
    import pyarrow.parquet as pq

    from jobs import cli

    start = time.perf_counter()
    code = cli.main(["search", "--index", folder, "--queries", str(work / f"q-{n}"), "--k", str(K),
                     "--output", str(work / f"nb-{n}"), *common(work), *extra])
    seconds = time.perf_counter() - start
    if code != 0:
        raise RuntimeError(f"search exited with {code}")
    last = max((r for r in pq.read_table(work / "runs").to_pylist() if r["job"] == "search"),
               key=lambda r: r["started_at"])
    return seconds, json.loads(last["stages"])["search + write"]


def compare_search(work: Path, n: int, folder: str, queries: np.ndarray) -> dict[str, Any]:
    """Seconds per variant: the job (defaults, and num_partitions=2) vs raw index.search, 2 threads."""
    import faiss
    from pyspark.sql import SparkSession

    spark = SparkSession.getActiveSession()
    partitions = spark.read.parquet(str(work / f"q-{n}")).rdd.getNumPartitions()
    job_s, stage_s = search_job(work, n, folder)
    split_s = search_job(work, n, folder, "--set", "num_partitions=2")[0]
    faiss.omp_set_num_threads(2)
    start = time.perf_counter()
    loaded = searcher.load(folder)
    load_s = time.perf_counter() - start
    start = time.perf_counter()
    searcher.search_ids(loaded, queries, K)
    raw_s = time.perf_counter() - start
    return {"partitions": partitions, "load_s": load_s, "seconds": {
        "job, end to end": job_s, "job, its `search + write` stage": stage_s,
        "job with num_partitions=2, end to end": split_s, "raw `index.search`": raw_s}}


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
    return {k: int(v.split()[0]) / 1024 for k, v in (line.split(":", 1) for line in lines) if v.endswith("kB")}


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
    largest = max(p.stat().st_size for p in Path(folder, "shards").glob("*.faiss")) / 2**20
    return {**result, "anon": anon, "mapped": mapped, "largest": largest, "ratio": result["hwm"] / largest}


def measure_size(work: Path, n: int, queries: int, merge: bool) -> dict[str, Any]:
    log.info("%d vectors: writing the embeddings table and %d queries", n, queries)
    vectors, held_out = make_data(work, n, queries)
    log.info("%d vectors: sparkamp build-index (factory auto)", n)
    build_s, meta = spark_build(work, n, str(work / f"idx-{n}"))
    log.info("%d vectors: single-process %s", n, meta["factory"])
    single = single_build(vectors, meta["factory"], meta["config"]["train_size"])
    log.info("%d vectors: recall check and search", n)
    result = {"n": n, "build_s": build_s, "meta": meta, "single": single,
              "recall": verify_recall(str(work / f"idx-{n}"), vectors, held_out[:1000]),
              "search": compare_search(work, n, str(work / f"idx-{n}"), held_out), "queries": queries}
    if merge:  # IVF at any size, since merge: ondisk needs inverted lists
        ivf = f"IVF{factory.ivf_lists(n)},Flat"
        log.info("%d vectors: %s build with merge: none, then each merge in a child process", n, ivf)
        result["none_s"] = spark_build(work, n, str(work / f"none-{n}"), "--factory", ivf,
                                       "--set", "merge=none")[0]
        result["merge"] = {v: measure_merge(str(work / f"none-{n}"), v) for v in ("memory", "ondisk")}
        result["merge_factory"] = ivf
    shutil.rmtree(work / f"emb-{n}")
    return result


# ---- running and reporting ------------------------------------------------------------------------

def start_spark(work: Path) -> Any:
    """local[2] through the project's own session code (Arrow, worker reuse); warmed up, not timed."""
    from jobs import build_index, cli, session

    cfg = build_index.Config(master="local[2]", warehouse=str(work / "wh"),
                             spark={"spark.ui.enabled": "false", "spark.ui.showConsoleProgress": "false"})
    spark = session.get_session(cfg, "bench", metastore=False)[0]
    make_data(work, 2000, 100)
    spark_build(work, 2000, str(work / "idx-2000"))
    cli.main(["search", "--index", str(work / "idx-2000"), "--queries", str(work / "q-2000"),
              "--output", str(work / "nb-2000"), *common(work)])
    return spark


def machine() -> str:
    info = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model = next((line.split(":", 1)[1].strip() for line in info.splitlines()
                  if line.startswith("Model name")), "unknown CPU")
    return f"{model}, {os.cpu_count()} cores"


def verdict(value: float, target: float, higher_is_better: bool) -> str:
    met = value >= target if higher_is_better else value <= target
    return f"{'≥' if higher_is_better else '≤'} {target} — {'met' if met else '**missed**'}"


NOTES = """Notes:
- Data: seeded, {clusters} Gaussian clusters (centres N(0,1), noise σ={noise}), L2-normalised, {dim}-d, \
written with pyarrow as 100k-row Parquet files (row groups of 32,768). Queries are held-out vectors \
from the same clusters, one Parquet file.
- Spark build = wall time of `sparkamp build-index` (`jobs.cli.main`, in-process) on an already \
running local[2] session (warmed up by a 2,000-row build and search): reading and checking the table \
(counts, distinct ids), two sampling passes, training on the driver, the shuffle into shards, adding, \
writing ids, merge (memory), recall tuning, publish. Single = train on the same number of sampled \
vectors + one `add_with_ids` with 2 faiss threads, vectors already in RAM (no Parquet read).
- Search job = wall time of `sparkamp search` including manifest sha256 checks, reading the queries, \
each Python worker loading the index, writing and verifying the output; "stage" = its own \
`search + write` stage. Raw = one `searcher.search_ids` call over all queries, 2 threads, same nprobe \
(manifest), index loaded beforehand. `num_partitions=2` repartitions the queries (a shuffle) so both \
cores search.
- Merge RSS: a fresh Python process per variant reads `trained.faiss` and the shards of a \
`merge: none` build, merges and writes the index (`index.shards.merge_in_memory` / `merge_on_disk`); \
peak = its VmHWM (includes the interpreter, numpy and faiss: the baseline column, and touched pages of \
memory-mapped files); anon and mapped peaks are sampled from /proc every 20 ms by the parent.
- One run of each measurement; the machine is shared and noisy."""


def report(args: argparse.Namespace, results: list[dict[str, Any]]) -> str:
    lines = [f"Command: `{' '.join(['.venv/bin/python', 'bench/index.py', *args.argv])}`  ",
             f"Date: {datetime.datetime.now().astimezone().isoformat(timespec='minutes')}  ",
             f"Machine: {machine()} (`lscpu`); Spark local[2]", "",
             "| vectors | factory (auto) | Spark build s | single train s | single add s | single total s "
             "| Spark ÷ single | target |", "|---:|---|---:|---:|---:|---:|---:|---|"]
    for r in results:
        s, ratio = r["single"], r["build_s"] / r["single"]["total"]
        lines.append(f"| {r['n']:,} | `{r['meta']['factory']}` | {r['build_s']:.1f} | {s['train']:.1f} "
                     f"| {s['add']:.1f} | {s['total']:.1f} | {ratio:.2f} | {verdict(ratio, BUILD_TARGET, False)} |")
    lines += ["", "Spark build stages (manifest `stage_seconds`): " + "; ".join(
        f"{r['n']:,}: " + ", ".join(f"{k} {r['meta']['stage_seconds'][k]:.1f}" for k in STAGES)
        for r in results), "",
        "| vectors | nprobe (tuned) | recall@10, manifest | recall@10, 1,000 held-out vs IndexFlatIP | target |",
        "|---:|---:|---:|---:|---|"]
    for r in results:
        m = r["meta"]
        lines.append(f"| {r['n']:,} | {m['nprobe']} | {m['recall_at_10']:.4f} | {r['recall']:.4f} "
                     f"| {verdict(min(m['recall_at_10'], r['recall']), RECALL_TARGET, True)} |")
    lines += ["", "| vectors | queries | variant | seconds | queries/s | ÷ raw | target |",
              "|---:|---:|---|---:|---:|---:|---|"]
    for r in results:
        times = r["search"]["seconds"]
        raw = times["raw `index.search`"]
        for variant, seconds in times.items():
            target = verdict(raw / seconds, SEARCH_TARGET, True) if variant == "job, end to end" else ""
            lines.append(f"| {r['n']:,} | {r['queries']:,} | {variant} | {seconds:.2f} "
                         f"| {r['queries'] / seconds:,.0f} | {raw / seconds:.3f} | {target} |")
    lines += ["", "Query table partitions as read: " + ", ".join(
        f"{r['n']:,}: {r['search']['partitions']}" for r in results) + "; `searcher.load` (not in raw) took "
        + ", ".join(f"{r['n']:,}: {r['search']['load_s']:.1f} s" for r in results) + "."]
    big = results[-1]
    lines += ["", f"Merge of the {len(big['meta']['shards'])} shards of a `merge: none` build of "
              f"{big['n']:,} vectors (`{big['merge_factory']}`, build {big['none_s']:.1f} s):", "",
              "| merge | seconds | peak RSS MiB (VmHWM) | baseline MiB | peak anon MiB | peak mapped MiB "
              "| largest shard MiB | peak ÷ shard | target |", "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for variant, m in big["merge"].items():
        target = verdict(m["ratio"], RSS_TARGET, False) if variant == "ondisk" else "—"
        lines.append(f"| {variant} | {m['seconds']:.1f} | {m['hwm']:,.0f} | {m['base']:,.0f} | {m['anon']:,.0f} "
                     f"| {m['mapped']:,.0f} | {m['largest']:,.0f} | {m['ratio']:.2f} | {target} |")
    lines += ["", NOTES.format(clusters=CLUSTERS, noise=NOISE, dim=DIM)]
    return "\n".join(lines)


def update_section(path: Path, heading: str, body: str) -> None:
    """Replaces `heading`'s section (up to the next `## `) in place, or appends it; others stay."""
    lines = path.read_text().splitlines() if path.exists() else [
        "# Benchmarks", "", "One section per benchmark script; each script rewrites only its own.", ""]
    new = [heading, "", *body.splitlines(), ""]
    if heading in lines:
        start = lines.index(heading)
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        lines[start:end] = new
    else:
        lines += ([""] if lines and lines[-1] else []) + new
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text("\n".join(lines).rstrip() + "\n")
    tmp.replace(path)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="100k vectors and 2,000 queries only")
    parser.add_argument("--sizes", type=int, nargs="+", help="vector counts (default 100000 1000000)")
    parser.add_argument("--queries", type=int, help="search queries (default 10,000; quick 2,000)")
    parser.add_argument("--work", type=Path, help="scratch folder (default: a temporary one)")
    parser.add_argument("--no-md", action="store_true", help="print only; leave BENCHMARKS.md alone")
    parser.add_argument("--merge-child", nargs=2, metavar=("VARIANT", "FOLDER"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.argv = argv
    args.sizes = args.sizes or ([100_000] if args.quick else [100_000, 1_000_000])
    args.queries = args.queries or (2_000 if args.quick else 10_000)
    return args


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    if args.merge_child:
        return merge_child(*args.merge_child)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    log.setLevel(logging.INFO)
    with tempfile.TemporaryDirectory(prefix="bench-index-", dir=args.work) as tmp:
        work = Path(tmp)
        spark = start_spark(work)
        try:
            results = [measure_size(work, n, args.queries, n == max(args.sizes)) for n in args.sizes]
        finally:
            spark.stop()
    body = report(args, results)
    print(body)
    if not (args.no_md or args.quick):  # only the full run owns the BENCHMARKS.md section
        update_section(ROOT / "BENCHMARKS.md", "## bench/index.py", body)
        log.info("updated the '## bench/index.py' section of %s", ROOT / "BENCHMARKS.md")


if __name__ == "__main__":
    main(sys.argv[1:])
