"""Similarity benchmarks: iconic200 retrieval (rank-weighted precision@15, embeddings alone and with each
re-ranking method) and all-vs-all k-NN throughput of the search job vs raw faiss on the same index.

    .venv/bin/python bench/similarity.py                    # full: 100k items for throughput
    .venv/bin/python bench/similarity.py --quick            # 20k items
    .venv/bin/python bench/similarity.py --skip-throughput  # iconic200 only
(bench/retrieval_grid.py compares models, layers, pooling, flip and whitening.)

Results are printed and written to the `## bench/similarity.py` section of BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
ICONIC = ROOT.parent / "shared" / "data" / "iconic200"
log = logging.getLogger("bench.similarity")

from bench.benchmarks_md import update_section  # noqa: E402


def cli(*args: str) -> None:
    from jobs import cli as sparkamp

    code = sparkamp.main([*args, "--set", "runs_table=", "--set", "log_level=WARNING"])
    if code != 0:
        raise SystemExit(f"sparkamp {args[0]} exited {code}")


# (label, embed-images keys); the first is the default. Pooling, flip, layers, models and whitening are
# compared by bench/retrieval_grid.py (the same descriptors, no Spark: 2 forward passes per model); the
# multi-scale rows here, through the job (scales 1 and √2 measured best of 1, 1/√2, √2 and their pairs)
EMBEDDINGS = [("efficientnet-lite0, default keys (avg, no flip)", []),
              ("efficientnet-lite0, pooling gem, scales [1, 1.414]", ["pooling=gem", "scales=[1, 1.414]"]),
              ("efficientnet-lite2, flip", ["model=efficientnet-lite2", "flip=true"]),
              ("efficientnet-lite2, pooling gem, flip, scales [1, 1.414]",
               ["model=efficientnet-lite2", "pooling=gem", "flip=true", "scales=[1, 1.414]"])]
# (label, search keys); rerank_top 100 candidates each
RERANKS = [("none", ["rerank=none"]), ("average-qe, qe_top 2", ["rerank=average-qe", "qe_top=2"]),
           ("average-qe, qe_top 5", ["rerank=average-qe", "qe_top=5"]),
           ("alpha-qe, qe_top 5, qe_alpha 3", ["rerank=alpha-qe", "qe_top=5", "qe_alpha=3"]),
           ("diffusion, rerank_graph_k 5, qe_top (seeds) 5", ["rerank=diffusion", "rerank_graph_k=5"]),
           ("diffusion, rerank_graph_k 10, qe_top (seeds) 5 (the keys' defaults)", ["rerank=diffusion"]),
           ("diffusion, rerank_graph_k 20, qe_top (seeds) 5", ["rerank=diffusion", "rerank_graph_k=20"]),
           ("diffusion, rerank_graph_k 10, qe_top (seeds) 100: every candidate seeds",
            ["rerank=diffusion", "qe_top=100"])]


def iconic200(spark, work: Path) -> list[tuple[str, str, float, float, float]]:
    """(embeddings, re-ranking, rank-weighted precision@15 x100 (the prototype's metric), search seconds,
    embed-images seconds): every re-ranking on the default embeddings, the embeddings alone for each option."""
    results = []
    for e, (emb_label, keys) in enumerate(EMBEDDINGS):
        emb, index = str(work / f"iconic-emb-{e}"), str(work / f"iconic-index-{e}")
        start = time.perf_counter()
        cli("embed-images", "--input", str(ICONIC), "--output", emb, *[a for k in keys for a in ("--set", k)])
        embed_seconds = time.perf_counter() - start
        cli("build-index", "--embeddings", emb, "--output", index)
        for r, (rr_label, rr_keys) in enumerate(RERANKS if e == 0 else RERANKS[:1]):
            nb, metrics = str(work / f"nb-{e}-{r}"), str(work / f"m-{e}-{r}")
            start = time.perf_counter()
            cli("search", "--index", index, "--queries", emb, "--output", nb, "--k", "15", "--exclude-self",
                *[a for k in rr_keys for a in ("--set", k)])
            seconds = time.perf_counter() - start
            cli("evaluate", "--neighbours", nb, "--labels", str(ICONIC / "classes.json"), "--output", metrics)
            table = spark.read.parquet(metrics).filter("class is null").toPandas().set_index("metric").value
            results.append((emb_label, rr_label, 100 * float(table["rank_weighted_precision@15"]), seconds,
                            embed_seconds))
            log.info("iconic200 %s, %s: %.1f", emb_label, rr_label, results[-1][2])
    return results


def synthetic_table(folder: Path, n: int, dim: int = 384, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(max(10, n // 100), dim)).astype(np.float32)
    x = centres[rng.integers(0, len(centres), n)] + 0.5 * rng.normal(size=(n, dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    ids = [f"item-{i:07d}" for i in range(n)]
    folder.mkdir(parents=True)
    for part, rows in enumerate(np.array_split(np.arange(n), 8)):
        names = [ids[i] for i in rows]
        pq.write_table(pa.table({
            "id": names, "source": ["synthetic"] * len(rows), "content_hash": names,
            "model": ["synthetic-384"] * len(rows),
            "embedding": pa.array(list(x[rows]), pa.list_(pa.float32())),
            "status": ["ok"] * len(rows), "error": pa.array([None] * len(rows), pa.string())}),
            folder / f"part-{part}.parquet")
    return x


def knn_throughput(work: Path, n: int) -> dict:
    """All-vs-all k=10 through `sparkamp search` vs raw index.search, same index, same 2 cores."""
    import faiss

    from index import searcher

    vectors = synthetic_table(work / "synthetic", n)
    index = str(work / "synthetic-index")
    cli("build-index", "--embeddings", str(work / "synthetic"), "--output", index)
    meta = json.loads((Path(index) / "manifest.json").read_text())
    start = time.perf_counter()
    cli("search", "--index", index, "--queries", str(work / "synthetic"), "--output",
        str(work / "synthetic-nb"), "--k", "10", "--exclude-self")
    job_seconds = time.perf_counter() - start
    loaded = searcher.load(index)
    faiss.omp_set_num_threads(2)
    start = time.perf_counter()
    for block in range(0, n, 4096):
        searcher.search_ids(loaded, vectors[block:block + 4096], 11)
    raw_seconds = time.perf_counter() - start
    return {"items": n, "factory": meta["factory"], "nprobe": meta["nprobe"],
            "job_items_per_s": n / job_seconds, "raw_items_per_s": n / raw_seconds,
            "ratio": raw_seconds / job_seconds}


def machine() -> str:
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model = re.search(r"Model name:\s*(.+)", lscpu)
    return f"{model.group(1).strip() if model else platform.processor()}, {os.cpu_count()} cores"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20k items for the throughput figure")
    parser.add_argument("--skip-throughput", action="store_true", help="iconic200 retrieval only")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    from pyspark.sql import SparkSession

    spark = (SparkSession.builder.master("local[2]").config("spark.ui.enabled", "false")
             .config("spark.sql.shuffle.partitions", "4").getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    with tempfile.TemporaryDirectory(prefix="bench-similarity-") as tmp:
        work = Path(tmp)
        retrieval = iconic200(spark, work) if ICONIC.exists() else []
        knn = None if args.skip_throughput else knn_throughput(work, 20_000 if args.quick else 100_000)
    command = "make bench" if args.quick else ".venv/bin/python bench/similarity.py" + \
        (" --skip-throughput" if args.skip_throughput else "")
    lines = [f"## bench/similarity.py{' --skip-throughput' if args.skip_throughput else ''}", "",
             f"Command: `{command}`; {datetime.date.today()}; {machine()}; local[2].", ""]
    if retrieval:
        lines += ["iconic200 (200 photos, 10 classes), cosine, each image's 15 nearest other images through the",
                  "jobs (embed-images, build-index, search, evaluate); the prototype's rank-weighted precision@15",
                  "(prototype best 89.5; issue 17's goals: >= 95 embeddings alone, >= 97.5 re-ranked):", "",
                  "| embeddings | re-ranking (search) | rank-weighted P@15 | search job seconds | embed job seconds |",
                  "|---|---|---|---|---|"]
        lines += [f"| {emb} | {rr} | {score:.1f} | {sec:.1f} | {embed:.1f} |" for emb, rr, score, sec, embed in retrieval]
        lines.append("")
    if knn:
        lines += [f"All-vs-all k-NN (k = 10, self excluded), {knn['items']:,} synthetic 384-d items, index "
                  f"`{knn['factory']}` (nprobe {knn['nprobe']}):", "",
                  "| path | items/s |", "|---|---|",
                  f"| `sparkamp search` (read, search, write, whole job) | {knn['job_items_per_s']:,.0f} |",
                  f"| raw `index.search`, 2 threads, one process | {knn['raw_items_per_s']:,.0f} |",
                  f"| ratio job / raw | {knn['ratio']:.2f} |", ""]
    update_section(ROOT / "BENCHMARKS.md", lines[0], "\n".join(lines[2:]))
    print("\n".join(lines))
    spark.stop()


if __name__ == "__main__":
    main()
