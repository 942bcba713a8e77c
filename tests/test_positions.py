"""Global ranks without a window over one partition (positions.rank_by) equal row_number over a global
window: on unique's order with ties, nulls and bad rows, over several range partitions."""
from __future__ import annotations

import random
from pathlib import Path

from jobs.indexing import ranking
from jobs.tables import scratch

ROOT = Path(__file__).resolve().parent.parent


def found_and_bad(spark, n: int, seed: int):
    """unique's inputs: nearest_other rows (scores with ties, some only_copies / no_neighbours) and rows
    whose vectors cannot be searched, ids in a shuffled order over several partitions."""
    rng = random.Random(seed)
    rows = []
    for i in rng.sample(range(n), n):
        status = rng.choices(["ok", "only_copies", "no_neighbours"], [0.9, 0.07, 0.03])[0]
        score = round(rng.uniform(-0.2, 1.0), 1) if status == "ok" else None  # 13 values: many ties
        rows.append((f"id{i:04d}", f"id{(i + 1) % n:04d}" if score is not None else None, score, status,
                     rng.randrange(1, 20)))
    found = spark.createDataFrame(rows, "id string, nearest_id string, nearest_score float, status string, "
                                        "seen long").repartition(5)
    bad = spark.createDataFrame([(f"bad{i}", "non_finite", "NaN in the vector") for i in range(7)],
                                "id string, status string, error string")
    return found, bad


def test_unique_ranks_equal_a_global_window(spark, tmp_path):
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    found, bad = found_and_bad(spark, 2_000, seed=3)
    spark.conf.set("spark.sql.adaptive.coalescePartitions.enabled", "false")  # keep 4 range partitions
    try:
        with scratch.folder(spark, str(tmp_path / "uniqueness"), "ranks") as work:
            ranked = ranking.uniqueness([found], work, bad)
            got = {r.id: (r["rank"], r.status, r.error) for r in ranked.collect()}
            plan = ranked._jdf.queryExecution().executedPlan().toString()
            parts = spark.read.parquet(f"{work}/sorted").select(F.shiftright("_order", 33)).distinct().count()
    finally:
        spark.conf.unset("spark.sql.adaptive.coalescePartitions.enabled")
    assert parts == 4 and "Window" not in plan

    # the ranks of before: row_number over one global window (every row through one task)
    every = found.select("id", "status").unionByName(bad.select("id", "status"))
    scores = found.select("id", "nearest_score")
    window = Window.orderBy(*ranking.rank_order())
    expected = {r.id: r["rank"] for r in every.join(scores, "id", "left")
                .withColumn("rank", F.row_number().over(window)).collect()}
    assert {i: rank for i, (rank, _, _) in got.items()} == expected
    assert sorted(expected.values()) == list(range(1, 2_008))
    by_rank = [i for i, _ in sorted(got.items(), key=lambda item: item[1][0])]
    not_ok = sorted(i for i, (_, status, _) in got.items() if status != "ok")
    assert len(not_ok) > 7 and by_rank[-len(not_ok):] == not_ok  # only copies, no neighbours, bad: last, by id
    assert {got[i][2] for i in got if got[i][1] == "no_neighbours"} == {"the index returned no other item"}
    assert list((tmp_path / "_sparkamp_staging").iterdir()) == []


def test_readme_lists_no_window_warning():
    troubleshooting = (ROOT / "README.md").read_text().split("## Troubleshooting", 1)[1]
    assert "WindowExec" not in troubleshooting.split("## Configuration reference", 1)[0]
