"""Embedding benchmark: the Spark jobs vs bare PyTorch loops (images/s, sentences/s), and iconic200 retrieval.

    .venv/bin/python bench/embed.py [--quick] [--repeats R] [--work DIR] [--no-md]

Throughput: `embed-images` (efficientnet-lite0) and `embed-texts` (all-MiniLM-L6-v2) run in-process on
local[2] (2 tasks x 1 torch thread) against the same model on the same inputs in a bare loop, as
1 process x 2 torch threads and as 2 processes x 1 thread. Passes are interleaved, best of R kept.
Quality: the default image model on iconic200, rank-weighted precision@15 by cosine. The results
table replaces the script's own section of BENCHMARKS.md (`--quick` has a section of its own).
"""
from __future__ import annotations

import argparse
import csv
import datetime
import json
import logging
import multiprocessing as mp
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)

from udfs import cnn, images, texts  # noqa: E402

log = logging.getLogger("bench.embed")
TARGET_RATIO, TARGET_SCORE, PROTOTYPE_SCORE = 0.90, 92.0, 89.5
# Principled knobs tried when the default misses the target: larger crops, and the ends of the last
# three stages of efficientnet-lite0 (blocks 10, 14, 15) instead of the 1280-d head.
KNOBS = ({"image_size": 260}, {"image_size": 300}, {"layer": "_blocks.15"},
         {"layer": "_blocks.14"}, {"layer": "_blocks.10"})


@dataclass
class Measure:
    """One timed pass: `items` in `seconds` of wall time; decode/model seconds summed over workers."""

    variant: str
    items: int
    seconds: float
    decode_s: float = 0.0
    model_s: float = 0.0

    @property
    def rate(self) -> float:
        return self.items / self.seconds


# ---- bare loops: the same batch functions the UDFs call, without Spark -----------------------

def embed_files(model: cnn.ImageModel, paths: list[str], batch_size: int) -> tuple[float, float]:
    """Read + decode + preprocess a batch with PIL, then one `embed_batch`. (decode s, model s)."""
    decode_s = model_s = 0.0
    for start in range(0, len(paths), batch_size):
        tick = time.perf_counter()
        pixels = np.stack([images.load_pixels(Path(p).read_bytes(), model.prep)
                           for p in paths[start:start + batch_size]])
        tock = time.perf_counter()
        cnn.embed_batch(model, pixels)
        decode_s, model_s = decode_s + tock - tick, model_s + time.perf_counter() - tock
    return decode_s, model_s


def encode_texts(model: texts.TextModel, items: list[str], batch_size: int) -> tuple[float, float]:
    """`SentenceTransformer.encode` (which sorts by length itself). (0, model s)."""
    tick = time.perf_counter()
    model.encoder.encode(items, batch_size=batch_size, convert_to_numpy=True,
                         normalize_embeddings=True, show_progress_bar=False)
    return 0.0, time.perf_counter() - tick


LOOPS = {"images": (lambda: cnn.load_image_model(cnn.ImageModelSpec()), embed_files),
         "texts": (lambda: texts.load_text_model(texts.TextModelSpec()), encode_texts)}
_MODELS: dict[str, object] = {}


def bare_threads(kind: str, items: list[str], batch_size: int, threads: int) -> Measure:
    """The bare loop in this process with `threads` torch threads; model load + 1 batch untimed."""
    import torch

    torch.set_num_threads(threads)
    load, loop = LOOPS[kind]
    model = _MODELS.setdefault(kind, load())
    loop(model, items[:batch_size], batch_size)
    tick = time.perf_counter()
    decode_s, model_s = loop(model, items, batch_size)
    return Measure(f"bare, 1 process x {threads} threads", len(items), time.perf_counter() - tick,
                   decode_s, model_s)


def _worker(kind: str, items: list[str], batch_size: int, barrier, results) -> None:
    import torch

    torch.set_num_threads(1)
    load, loop = LOOPS[kind]
    model = load()
    loop(model, items[:batch_size], batch_size)
    barrier.wait()  # all processes start the timed pass together
    tick = time.perf_counter()
    decode_s, model_s = loop(model, items, batch_size)
    results.put((time.perf_counter() - tick, decode_s, model_s))


def bare_processes(kind: str, items: list[str], batch_size: int, procs: int) -> Measure:
    """The bare loop in `procs` spawned processes x 1 thread, items dealt round-robin; wall = slowest."""
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(procs), ctx.Queue()
    workers = [ctx.Process(target=_worker, args=(kind, items[i::procs], batch_size, barrier, results))
               for i in range(procs)]
    for worker in workers:
        worker.start()
    done = [results.get(timeout=3600) for _ in workers]
    for worker in workers:
        worker.join()
    return Measure(f"bare, {procs} processes x 1 thread", len(items), max(d[0] for d in done),
                   sum(d[1] for d in done), sum(d[2] for d in done))


# ---- the Spark jobs, in-process ------------------------------------------------------------

def start_spark(work: Path):
    """local[2] through the project's own session code (worker reuse, Arrow); not timed."""
    from jobs import embed_images, session

    cfg = embed_images.Config(master="local[2]", warehouse=str(work / "warehouse"),
                              spark={"spark.ui.enabled": "false", "spark.ui.showConsoleProgress": "false"})
    return session.get_session(cfg, "bench", metastore=False)[0]


def job_config(job, work: Path, **keys):
    cfg = job.Config(master="local[2]", warehouse=str(work / "warehouse"), runs_table="", **keys)
    cfg.validate()
    return cfg


def run_job(spark, job, cfg) -> Measure:
    """`job.run` timed whole: listing/reading, counting, embedding, writing, verifying, publishing."""
    from jobs.summary import RunSummary
    from jobs.tables import new_run_id

    summary = RunSummary(job.NAME, new_run_id())
    tick = time.perf_counter()
    job.run(spark, cfg, summary)
    seconds = time.perf_counter() - tick
    if summary.rows_ok != summary.rows_in:
        raise RuntimeError(f"{job.NAME}: {summary.rows_in} rows in, statuses {summary.statuses}")
    return Measure("Spark job, local[2] x 1 thread", summary.rows_in, seconds,
                   summary.stats.get("decode_seconds", 0.0), summary.stats.get("model_seconds", 0.0))


def compare(spark, kind: str, cfgs: tuple, items: list[str], repeats: int) -> list[Measure]:
    """Interleaves the Spark job and both bare loops `repeats` times; each variant's best pass."""
    job, warm_cfg, cfg = cfgs
    passes = (lambda: run_job(spark, job, cfg),
              lambda: bare_threads(kind, items, cfg.batch_size, 2),
              lambda: bare_processes(kind, items, cfg.batch_size, 2))
    best: dict[str, Measure] = {}
    for round_ in range(repeats):
        for timed in passes:
            if timed is passes[0]:  # idle Python workers die after 1 min: reload the model untimed
                run_job(spark, job, warm_cfg)
            m = timed()
            log.info("%s round %d: %-32s %7.1f items/s", kind, round_ + 1, m.variant, m.rate)
            if m.variant not in best or m.rate > best[m.variant].rate:
                best[m.variant] = m
    return list(best.values())


# ---- inputs and retrieval quality ----------------------------------------------------------

def write_images(folder: Path, source: Path, n: int) -> list[str]:
    """n JPEGs: iconic200 repeated (copies, so Spark lists and reads n real files)."""
    photos = sorted(source.glob("*.jpg"), key=lambda p: int(p.stem))
    folder.mkdir(parents=True)
    paths = [str(folder / f"{i:05d}.jpg") for i in range(n)]
    for i, path in enumerate(paths):
        shutil.copyfile(photos[i % len(photos)], path)
    return paths


def write_texts(path: Path, agnews_csv: Path, n: int) -> list[str]:
    """The first n AG News test rows as `title. description`, also written as JSON Lines (id, text)."""
    with open(agnews_csv, newline="", encoding="utf-8") as fh:
        rows = [row for _, row in zip(range(n), csv.reader(fh))]
    items = [f"{title}. {description}" for _, title, description in rows]
    with open(path, "w", encoding="utf-8") as out:
        for i, text in enumerate(items):
            out.write(json.dumps({"id": str(i), "text": text}) + "\n")
    return items


def rank_weighted_precision(vectors: np.ndarray, labels: list[str], k: int = 15) -> float:
    """Mean over items of 100 * same-label weight / total weight of the k nearest others (cosine)."""
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    sims = unit @ unit.T
    np.fill_diagonal(sims, -np.inf)
    nearest = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    names = np.asarray(labels)
    weights = (k - np.arange(k)) / k
    return float(100 * ((names[nearest] == names[:, None]) @ weights).mean() / weights.sum())


def iconic_score(spark, work: Path, iconic: Path, **keys) -> float:
    """Embeds iconic200 with the Spark job (config `keys`) and scores the embeddings."""
    import pyarrow.parquet as pq
    from jobs import embed_images

    out = work / ("iconic-" + "-".join(f"{k}{v}" for k, v in keys.items()))
    run_job(spark, embed_images, job_config(embed_images, work, input=str(iconic), output=str(out), **keys))
    table = pq.read_table(out, columns=["id", "embedding"]).to_pydict()
    classes = {k: v for entry in json.loads((iconic / "classes.json").read_text()) for k, v in entry.items()}
    labels = [classes[Path(name).stem] for name in table["id"]]
    return rank_weighted_precision(np.array(table["embedding"], dtype=np.float32), labels)


# ---- report ---------------------------------------------------------------------------------

def machine() -> str:
    info = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model = next((line.split(":", 1)[1].strip() for line in info.splitlines()
                  if line.startswith("Model name")), "unknown CPU")
    return f"{model}, {os.cpu_count()} cores"


def throughput_rows(kind: str, measures: list[Measure]) -> tuple[list[str], float]:
    """Markdown rows per variant and the Spark ÷ best-bare ratio."""
    spark, bare = measures[0], max(measures[1:], key=lambda m: m.rate)
    rows = []
    for m in measures:
        decode = f"{1000 * m.decode_s / m.items:.2f}" if m.decode_s else "—"
        ratio = "" if m is spark else f"{spark.rate / m.rate:.3f}"
        rows.append(f"| {kind} | {m.variant} | {m.items} | {m.seconds:.2f} | {m.rate:.1f} | {decode} | "
                    f"{1000 * m.model_s / m.items:.2f} | {ratio} |")
    return rows, spark.rate / bare.rate


def verdict(value: float, target: float) -> str:
    return "meets target" if value >= target else "BELOW target"


def report(args, speed: dict[str, list[Measure]], scores: list[tuple[str, float]]) -> str:
    lines = [f"Command: `{' '.join(['.venv/bin/python', 'bench/embed.py', *args.argv])}`  ",
             f"Date: {datetime.datetime.now().astimezone().isoformat(timespec='minutes')}  ",
             f"Machine: {machine()} (`lscpu`)", "",
             "| benchmark | variant | items | seconds | items/s | decode ms/item | model ms/item | Spark ÷ this |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    ratios = {}
    for kind, measures in speed.items():
        rows, ratios[kind] = throughput_rows(kind, measures)
        lines += rows
    default = scores[0][1]
    lines += ["", "| check | measured | target | verdict |", "|---|---:|---|---|"]
    lines += [f"| {kind}/s, Spark ÷ best bare loop | {r:.3f} | >= {TARGET_RATIO:.2f} | {verdict(r, TARGET_RATIO)} |"
              for kind, r in ratios.items()]
    lines.append(f"| iconic200 rank-weighted P@15, efficientnet-lite0 default | {default:.1f} | >= "
                 f"{TARGET_SCORE:.0f} (prototype best {PROTOTYPE_SCORE}) | {verdict(default, TARGET_SCORE)} |")
    if len(scores) > 1:
        lines += ["", "iconic200 knobs (same metric, one change each): "
                  + ", ".join(f"{name} **{score:.1f}**" for name, score in scores) + "."]
    lines += ["", "Notes:",
              f"- Best of {args.repeats} interleaved passes per variant. The machine is shared and noisy "
              "(tests may run at the same time): trust the side-by-side ratios, not absolute numbers.",
              "- Spark time = `job.run` on a running local[2] session: listing/reading, counting, "
              "embedding, writing Parquet, verifying and publishing. Session start-up is excluded.",
              "- Warm-up: before each timed Spark pass the job runs on a tiny input, so both reused "
              "Python workers hold the model (idle workers die after 1 min); the bare loops load the "
              "model and embed one batch untimed.",
              "- Threads: Spark = 2 tasks x 1 torch thread (+2 decode threads per task, overlapped with "
              "the model); bare = 1 process x 2 torch threads (decode then model, serial) or 2 "
              "processes x 1 thread. Same batch size as the job's default.",
              "- decode/model ms/item are summed over tasks/processes (Spark: the job's decode_seconds "
              "and model_seconds stats; Spark text model time includes its token-length pass).",
              f"- Images: iconic200 JPEGs (~320x240) repeated to {args.images}; texts: first "
              f"{args.texts} AG News test rows as `title. description`, JSON Lines (id, text)."]
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
    parser.add_argument("--quick", action="store_true", help="200 images, 400 texts, 1 pass, no knobs")
    parser.add_argument("--repeats", type=int, help="interleaved passes per variant (default 3; quick 1)")
    parser.add_argument("--data", type=Path, default=Path("/work/shared/data"), help="agnews/, iconic200/")
    parser.add_argument("--work", type=Path, help="scratch folder (default: a temporary one)")
    parser.add_argument("--no-md", action="store_true", help="print only; leave BENCHMARKS.md alone")
    args = parser.parse_args(argv)
    args.argv = argv
    args.images, args.texts = (200, 400) if args.quick else (1200, 3000)
    args.repeats = args.repeats or (1 if args.quick else 3)
    return args


def main(argv: list[str]) -> None:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    log.setLevel(logging.INFO)
    args = parse_args(argv)
    from jobs import embed_images, embed_texts

    with tempfile.TemporaryDirectory(prefix="bench-embed-") as tmp:
        work = args.work or Path(tmp)
        paths = write_images(work / "images", args.data / "iconic200", args.images)
        items = write_texts(work / "texts.jsonl", args.data / "agnews" / "test.csv", args.texts)
        write_images(work / "warm-images", args.data / "iconic200", 8)
        write_texts(work / "warm-texts.jsonl", args.data / "agnews" / "test.csv", 16)
        spark = start_spark(work)
        try:
            image_cfgs = (embed_images, *(job_config(embed_images, work, input=str(work / name),
                                                     output=str(work / f"out-{name}"))
                                          for name in ("warm-images", "images")))
            text_cfgs = (embed_texts, *(job_config(embed_texts, work, input=str(work / name),
                                                   output=str(work / f"out-{name}"))
                                        for name in ("warm-texts.jsonl", "texts.jsonl")))
            speed = {"images": compare(spark, "images", image_cfgs, paths, args.repeats),
                     "sentences": compare(spark, "texts", text_cfgs, items, args.repeats)}
            scores = [("default (224 px, head features)", iconic_score(spark, work, args.data / "iconic200"))]
            if scores[0][1] < TARGET_SCORE and not args.quick:
                scores += [(", ".join(f"{k}={v}" for k, v in knob.items()),
                            iconic_score(spark, work, args.data / "iconic200", **knob)) for knob in KNOBS]
        finally:
            spark.stop()
    body = report(args, speed, scores)
    print(body)
    if not args.no_md:
        heading = "## bench/embed.py" + (" --quick" if args.quick else "")
        update_section(ROOT / "BENCHMARKS.md", heading, body)
        log.info("updated the %r section of %s", heading, ROOT / "BENCHMARKS.md")


if __name__ == "__main__":
    main(sys.argv[1:])
