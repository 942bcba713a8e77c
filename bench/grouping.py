"""Grouping and ranking benchmark: dedup's connected components and unique's global ranks in Spark, each
beside the method it replaced (union-find on the driver over `toLocalIterator`; `row_number` over a
window without a partition), with seconds and peak anonymous RSS of the driver's Python process and of
its JVM (in local mode the JVM also runs the executors).

    .venv/bin/python bench/grouping.py [--quick] [--edges N ...] [--rows N ...] [--work DIR] [--no-md]
                                       [--save FILE] [--render FILE]

Graphs are synthetic duplicate pairs made in Spark (nothing on the driver): random trees of 5 items
(4 pairs each) plus one chain holding 1% of the pairs (the worst case for the number of rounds), with
ids hashed so that their order is random. Ranking input: unique's rows (id, nearest_id, nearest_score
rounded to 3 decimals so that ties are common, status; 1% only_copies with no score). Inputs are
written to Parquet first and not timed; results are written to Spark's `noop` sink. Full: 20k / 200k /
2M pairs, 1M / 4M rows; `--quick`: 20k pairs, 200k rows. Rewrites its own section of BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)

from bench.benchmarks_md import update_section  # noqa: E402
from bench.scale import TreeWatch, reset_peaks  # noqa: E402

log = logging.getLogger("bench.grouping")
CHAIN_FRACTION, ONLY_COPIES = 0.01, 0.01
ONE_CORE = ("union-find on the driver", "ranks by one window")  # methods that run in one process or task


def pair_graph(spark, edges: int):
    """DataFrame(id_a, id_b): `edges` pairs, trees of 5 items and one chain of CHAIN_FRACTION of them."""
    from pyspark.sql import functions as F

    chain = int(edges * CHAIN_FRACTION)
    groups = (edges - chain) // 4
    i = F.col("id")
    member = i % 4 + 1  # members 1..4 of group i // 4 link to a random earlier member
    trees = spark.range(groups * 4).select((F.floor(i / 4) * 5 + member).alias("a"),
                                           (F.floor(i / 4) * 5 + F.pmod(F.xxhash64(i), member)).alias("b"))
    start = groups * 5
    path = spark.range(chain).select((i + start).alias("a"), (i + start + 1).alias("b"))
    name = lambda c: F.substring(F.sha2(F.col(c).cast("string"), 256), 1, 16)  # noqa: E731
    return trees.union(path).select(name("a").alias("id_a"), name("b").alias("id_b"))


def unique_rows(spark, n: int):
    """DataFrame(id, nearest_id, nearest_score, status, error) like unique's before ranking."""
    from pyspark.sql import functions as F

    i = F.col("id")
    copies = F.rand(1) < ONLY_COPIES
    return spark.range(n).select(F.substring(F.sha2(i.cast("string"), 256), 1, 16).alias("id"),
                                 F.when(~copies, F.concat(F.lit("n"), i.cast("string"))).alias("nearest_id"),
                                 F.when(~copies, F.round(F.rand(2), 3).cast("float")).alias("nearest_score"),
                                 F.when(copies, "only_copies").otherwise("ok").alias("status"),
                                 F.lit(None).cast("string").alias("error"))


def watched(name: str, size: int, step: Callable[[], int]) -> dict:
    """Runs `step` (returns the items it handled) under a TreeWatch of this process: seconds, peaks."""
    reset_peaks(os.getpid())
    watch = TreeWatch(os.getpid())
    start = time.perf_counter()
    items = step()
    seconds = time.perf_counter() - start
    peaks = watch.stop()
    anon = {role: max((p[1] for p in peaks.get(role, [])), default=0.0) for role in ("driver", "jvm")}
    row = {"what": name, "size": size, "items": items, "seconds": seconds, **anon}
    log.info("%s", row)
    return row


def components_rows(spark, work: Path, edges: int) -> list[dict]:
    """Connected components in Spark and union-find on the driver over the same pairs."""
    from jobs.indexing.components import connected_components
    from jobs.tables import scratch

    location = str(work / f"pairs-{edges}")
    pair_graph(spark, edges).write.mode("overwrite").parquet(location)
    pairs = spark.read.parquet(location)
    rounds = []

    def in_spark() -> int:
        with scratch.folder(spark, str(work / "groups"), "bench") as folder:
            found = connected_components(pairs, folder)
            found.members.write.format("noop").mode("overwrite").save()
            rounds.append(found.rounds)
            return found.count

    def on_driver() -> int:  # the method it replaced (jobs/indexing/groups.py before issue 15)
        from tests.test_components import connected_groups

        few = pairs.coalesce(max(1, spark.sparkContext.defaultParallelism))
        members = connected_groups((r.id_a, r.id_b) for r in few.toLocalIterator(prefetchPartitions=True))
        spark.createDataFrame(sorted(members.items()), "id string, group_id string") \
            .write.format("noop").mode("overwrite").save()
        return len(members)

    rows = [watched("components in Spark", edges, in_spark), watched("union-find on the driver", edges, on_driver)]
    rows[0]["rounds"] = rounds[0]
    return rows


def ranking_rows(spark, work: Path, n: int) -> list[dict]:
    """unique's ranks by positions.rank_by and by a window without a partition, over the same rows."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    from jobs.indexing.ranking import rank_order
    from jobs.tables import scratch
    from jobs.tables.positions import rank_by

    location = str(work / f"rows-{n}")
    unique_rows(spark, n).write.mode("overwrite").parquet(location)
    rows = spark.read.parquet(location)

    def in_ranges() -> int:
        with scratch.folder(spark, str(work / "ranks"), "bench") as folder:
            rank_by(rows, rank_order(), folder).write.format("noop").mode("overwrite").save()
        return n

    def one_window() -> int:  # the method it replaced (jobs/indexing/ranking.py before issue 15)
        rows.withColumn("rank", F.row_number().over(Window.orderBy(*rank_order()))) \
            .write.format("noop").mode("overwrite").save()
        return n

    return [watched("ranks by range partitions", n, in_ranges), watched("ranks by one window", n, one_window)]


def report(rows: list[dict], run: dict) -> str:
    """BENCHMARKS.md's section; `run`: command, date, seconds (whole run), load (average at the end)."""
    lines = [f"Command: `{run['command']}`  ", f"Date: {run['date']}  ",
             f"Machine: {os.cpu_count()} cores, Spark local[2], one session; whole run {run['seconds'] / 60:.1f} "
             "min. **Shared machine**: other engineers' tests and benchmarks ran at the same time (load average "
             f"{run['load']:.0f} at the end), so seconds are upper bounds.", "",
             "| method | size | items | rounds | s | items/s | driver Py anon MiB | JVM anon MiB |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['what']} | {r['size']:,} | {r['items']:,} | {r.get('rounds', '')} | {r['seconds']:.1f} | "
                     f"{r['items'] / r['seconds']:,.0f} | {r['driver']:,.0f} | {r['jvm']:,.0f} |")
    lines += ["", "size: pairs (components) or rows (ranks); items: ids in groups, or rows ranked. Driver Py anon: "
              "peak anonymous RSS of this Python process (the driver) during the step (sampled every 0.2 s; "
              "Python keeps memory it freed, so a step after union-find starts from its peak); JVM: the driver "
              "JVM, which in local mode also runs the executors' tasks (a cluster's driver JVM does not).", "",
              "Marginal rate between the two largest sizes of each method (the fixed cost of Spark's jobs "
              "per round removed), per core of local[2] for the Spark methods, per the one core they use "
              "for the others:", ""]
    for what in dict.fromkeys(r["what"] for r in rows):
        runs = sorted((r for r in rows if r["what"] == what), key=lambda r: r["items"])
        if len(runs) >= 2 and runs[-1]["seconds"] > runs[-2]["seconds"]:
            rate = (runs[-1]["items"] - runs[-2]["items"]) / (runs[-1]["seconds"] - runs[-2]["seconds"])
            cores = 1 if what in ONE_CORE else 2
            lines.append(f"- {what}: {rate:,.0f} items/s, {rate / cores:,.0f} per core ({cores} core"
                         f"{'s' if cores > 1 else ''})")
    lines += ["", "What bounds them: union-find and the window run in one process or one task, whatever the "
              "cores, and union-find holds every id of a pair in the driver's Python. Components in Spark hold "
              "nothing on the driver; their cost is rounds (about log₂ of the longest chain of pairs: the "
              "rounds column) × four shuffles of the pairs and a Parquet checkpoint per round, spread over "
              "the executors, plus Spark's fixed cost per job (several seconds a round on this loaded machine, "
              "which dominates the small sizes). Ranks by range partitions cost a sort, one Parquet write and "
              "read and a broadcast join of one row per partition, spread over the executors."]
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--edges", type=int, nargs="*")
    parser.add_argument("--rows", type=int, nargs="*")
    parser.add_argument("--work", type=Path)
    parser.add_argument("--no-md", action="store_true")
    parser.add_argument("--save", type=Path, help="also write the measured rows here (JSON)")
    parser.add_argument("--render", type=Path, help="no run: the section from rows saved by --save")
    args = parser.parse_args(argv)
    if args.render:
        saved = json.loads(args.render.read_text())
        return publish(saved["rows"], saved["run"], args)
    edges = args.edges if args.edges is not None else ([20_000] if args.quick else [20_000, 200_000, 2_000_000])
    sizes = args.rows if args.rows is not None else ([200_000] if args.quick else [1_000_000, 4_000_000])
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    from pyspark.sql import SparkSession

    work = args.work or Path(tempfile.mkdtemp(prefix="bench-grouping-"))
    spark = (SparkSession.builder.master("local[2]").appName("bench-grouping")
             .config("spark.driver.memory", "3g").config("spark.ui.enabled", "false")
             .config("spark.sql.shuffle.partitions", "4")  # 2 x cores, as jobs.core.session sets for local[2]
             .config("spark.sql.warehouse.dir", str(work / "wh")).getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    start, rows = time.perf_counter(), []
    try:
        for n in edges:
            rows += components_rows(spark, work, n)
        for n in sizes:
            rows += ranking_rows(spark, work, n)
    finally:
        spark.stop()
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    run = {"command": "python bench/grouping.py " + " ".join(argv), "seconds": time.perf_counter() - start,
           "date": f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%dT%H:%M%z}", "load": os.getloadavg()[0]}
    if args.save:
        args.save.write_text(json.dumps({"rows": rows, "run": run}, indent=1))
    publish(rows, run, args)


def publish(rows: list[dict], run: dict, args: argparse.Namespace) -> None:
    body = report(rows, run)
    print(body)
    if not args.no_md:
        update_section(ROOT / "BENCHMARKS.md", "## bench/grouping.py" + (" --quick" if args.quick else ""), body)


if __name__ == "__main__":
    main(sys.argv[1:])
