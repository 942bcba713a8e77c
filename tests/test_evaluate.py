"""Retrieval metrics against values computed by hand."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from jobs import cli
from tests.conftest import common_args
from tests.test_degenerate_tables import last_run
from udfs.similarity import expand_queries, query_metrics


def test_query_metrics_by_hand():
    m = query_metrics([True, False, True], relevant=2, k=3)
    assert m["precision"] == pytest.approx(2 / 3)
    assert m["rank_weighted_precision"] == pytest.approx((1 + 1 / 3) / 2)  # weights 3/3, 2/3, 1/3
    assert m["average_precision"] == pytest.approx((1 + 2 / 3) / 2)
    assert m["recall"] == pytest.approx(1.0)
    short = query_metrics([False, True], relevant=5, k=4)  # fewer neighbours than k count as misses
    assert short["precision"] == pytest.approx(0.25) and short["recall"] == pytest.approx(0.2)
    assert short["average_precision"] == pytest.approx(0.5 / 4)


def test_query_expansion():
    import numpy as np

    q = np.array([[1.0, 0.0]], np.float32)
    nb = np.array([[[0.0, 1.0], [0.0, 1.0]]], np.float32)
    assert np.allclose(expand_queries(q, nb, np.array([[0.5, 0.5]]), 2, 0), [[1 / 5 ** 0.5, 2 / 5 ** 0.5]])
    assert np.allclose(expand_queries(q, nb, np.array([[0.0, 0.0]]), 2, 3), [[1.0, 0.0]])


def test_evaluate_job_matches_hand_computed_values(spark, tmp_path):
    neighbours = pd.DataFrame({
        "query_id": ["imgs/a.jpg"] * 3 + ["imgs/d.jpg"] * 3,
        "rank": [1, 2, 3, 1, 2, 3],
        "neighbor_id": ["imgs/b.jpg", "imgs/d.jpg", "imgs/c.jpg", "imgs/a.jpg", "imgs/e.jpg", "imgs/b.jpg"],
        "score": [0.9, 0.8, 0.7, 0.9, 0.8, 0.7], "status": "ok", "error": None})
    # a labelled query that failed upstream (its one status row) and an ok query with no gold label
    others = pd.DataFrame({"query_id": ["imgs/e.jpg", "imgs/z.jpg"], "rank": pd.array([None, 1], "Int32"),
                           "neighbor_id": [None, "imgs/a.jpg"], "score": [None, 0.5],
                           "status": ["decode_error", "ok"], "error": ["cannot identify image file", None]})
    pd.concat([neighbours, others]).astype({"rank": "Int32", "score": "float32"}).to_parquet(tmp_path / "nb.parquet")
    labels = tmp_path / "classes.json"  # the iconic200 layout: a list of one-entry objects
    labels.write_text(json.dumps([{"a": "x"}, {"b": "x"}, {"c": "x"}, {"d": "y"}, {"e": "y"}]))
    out = str(tmp_path / "metrics")
    assert cli.main(["evaluate", "--neighbours", str(tmp_path / "nb.parquet"), "--labels", str(labels),
                     "--output", out, *common_args(tmp_path)]) == 0
    table = spark.read.parquet(out).toPandas()
    overall = table[table["class"].isna()].set_index("metric").value
    assert overall["precision@3"] == pytest.approx(0.5)
    assert overall["rank_weighted_precision@3"] == pytest.approx(0.5)
    assert overall["average_precision@3"] == pytest.approx(((1 + 2 / 3) / 2 + 0.5) / 2)
    assert overall["recall@3"] == pytest.approx(1.0)
    per_class = table[table["class"] == "y"].set_index("metric").value
    assert per_class["precision@3"] == pytest.approx(1 / 3) and (table.k == 3).all()
    assert set(table.job) == {"evaluate"} and (table[table["class"].isna()].queries == 2).all()
    run = last_run(tmp_path, "evaluate")
    assert run["rows_in"] == 4 and run["statuses"] == {"ok": 2, "decode_error": 1, "unlabelled": 1}
