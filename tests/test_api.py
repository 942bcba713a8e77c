"""`import sparkamp` as a notebook uses it: the caller's session and DataFrames in, the same rows as the CLI jobs
out (one code path), the session left as it was; the column functions; the runnable example."""
from __future__ import annotations

import json
import logging
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import sparkamp
from jobs import cli
from jobs.samples import datasets
from jobs.tables import contracts
from tests.conftest import ROOT, common_args


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """50 Fashion-MNIST PNGs and a broken one; 50 fortunes and an empty text (a JSON Lines file)."""
    folder = tmp_path_factory.mktemp("api")
    datasets.write_fashion_mnist(folder / "images", 50, seed=4)
    (folder / "images" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    rows = [{"id": r["id"], "text": r["text"]} for r in datasets.fortunes()[::20][:50]] + [{"id": "blank", "text": ""}]
    with (folder / "fortunes.jsonl").open("w") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in rows)
    return folder, rows


def settings(spark) -> dict:
    """Every runtime setting of the session (what a library function must not leave changed)."""
    return {r.key: r.value for r in spark.sql("SET -v").collect()} | dict(spark.sparkContext.getConf().getAll())


def rows_of(df, key: list[str]) -> pd.DataFrame:
    return df.toPandas().sort_values(key, na_position="first").reset_index(drop=True)


def test_the_api_gives_the_cli_jobs_rows_in_the_callers_session(spark, inputs, tmp_path):
    folder, texts = inputs
    out, labels = tmp_path / "cli", str(ROOT / "conf" / "labels_fortunes.yaml")
    for job in (["embed-images", "--input", str(folder / "images"), "--output", str(out / "img")],
                ["embed-texts", "--input", str(folder / "fortunes.jsonl"), "--output", str(out / "txt")],
                ["build-index", "--embeddings", str(out / "img"), "--output", str(out / "index")],
                ["search", "--index", str(out / "index"), "--queries", str(out / "img"), "--output", str(out / "nb"),
                 "--k", "5", "--exclude-self"],
                ["assign-labels", "--embeddings", str(out / "txt"), "--labels", labels, "--top-k", "2",
                 "--output", str(out / "labels")],
                ["assign-labels", "--embeddings", str(out / "txt"), "--texts", str(folder / "fortunes.jsonl"),
                 "--labels", labels, "--set", "self_training=3", "--set", "co_training=tfidf",
                 "--output", str(out / "cot")]):
        assert cli.main([*job, *common_args(tmp_path)]) == 0, job[0]
    cli_rows = {name: spark.read.parquet(str(out / name)) for name in ("img", "txt", "nb", "labels", "cot")}

    before, handlers = settings(spark), list(logging.getLogger().handlers)
    paths = [(str(p.relative_to(folder / "images")), str(p)) for p in sorted((folder / "images").rglob("*.png"))]
    images = sparkamp.embed_images(spark.createDataFrame(paths, "id string, path string"), path_col="path")
    docs = sparkamp.embed_texts(spark.createDataFrame(pd.DataFrame(texts)))
    info = sparkamp.build_index(images, str(tmp_path / "index"))
    found = sparkamp.search(images, str(tmp_path / "index"), k=5, exclude_self=True)
    labelled = sparkamp.assign_labels(docs, labels, top_k=2)
    words = spark.createDataFrame(pd.DataFrame(texts)).withColumnRenamed("text", "words")
    cot = sparkamp.assign_labels(docs.join(words, "id", "left"), labels, self_training=3, co_training="tfidf",
                                 text_column="words")

    for api, cli_name in ((images, "img"), (docs, "txt")):
        assert tuple(api.columns) == contracts.EMBEDDINGS.columns
        a, c = rows_of(api, ["id"]), rows_of(cli_rows[cli_name], ["id"])
        assert a.id.tolist() == c.id.tolist() and a.status.tolist() == c.status.tolist()
        assert a.content_hash.tolist() == c.content_hash.tolist() and set(a.model) == set(c.model)
        ok = (a.status == "ok").to_numpy()
        assert ok.sum() == 50 and np.abs(np.stack(a.embedding[ok]) - np.stack(c.embedding[ok])).max() < 1e-5
    assert rows_of(images, ["id"]).set_index("id").status["broken.png"] == "decode_error"
    assert rows_of(docs, ["id"]).set_index("id").status["blank"] == "empty"

    manifest = json.loads((out / "index" / "manifest.json").read_text())
    assert (info.ntotal, info.dim, info.factory, info.model) == (50, 1280, manifest["factory"], manifest["model"])
    assert info.statuses == {"ok": 50, "decode_error": 1} and info.recall_at_10 == 1.0

    for api, cli_name, key in ((found, "nb", ["query_id", "rank"]), (labelled, "labels", ["id", "rank"]),
                               (cot, "cot", ["id", "rank"])):
        contract = contracts.NEIGHBOURS if cli_name == "nb" else contracts.LABELS
        assert tuple(api.columns) == contract.columns
        a, c = rows_of(api, key), rows_of(cli_rows[cli_name], key)
        named = [col for col in a.columns if col != "score"]
        assert a[named].equals(c[named])
        assert np.allclose(a.score.fillna(0), c.score.fillna(0), atol=1e-4)
    assert len(rows_of(found, ["query_id"])) == 50 * 5 + 1  # every image, and the broken one's status row

    assert settings(spark) == before and logging.getLogger().handlers == handlers
    assert spark.range(3).count() == 3  # the caller's session is still up


def test_column_functions_equal_the_table_functions(spark, inputs):
    folder, texts = inputs
    paths = spark.createDataFrame([("a", str(folder / "images" / "broken.png")), ("b", None)]
                                  + [(p.name, str(p)) for p in sorted((folder / "images").rglob("*.png"))[:3]],
                                  "id string, path string")
    by_column = paths.withColumn("e", sparkamp.image_embedding("path")).select("id", "e.*").toPandas()
    by_table = sparkamp.embed_images(paths.filter("id not in ('a', 'b')"), path_col="path").toPandas()
    got = by_column.set_index("id")
    assert (got.status["a"], got.status["b"]) == ("decode_error", "empty") and got.embedding[["a", "b"]].isna().all()
    for row in by_table.itertuples():
        assert got.status[row.id] == "ok" and np.abs(np.asarray(got.embedding[row.id]) - row.embedding).max() < 1e-5

    frame = spark.createDataFrame(pd.DataFrame(texts[:4]))
    by_text = frame.select("id", sparkamp.text_embedding("text").alias("e")).select("id", "e.*").toPandas()
    expected = sparkamp.embed_texts(frame).toPandas().set_index("id")
    for row in by_text.itertuples():
        assert row.status == expected.status[row.id] == "ok"
        assert np.abs(np.asarray(row.embedding) - expected.embedding[row.id]).max() < 1e-5
    with pytest.raises(ValueError, match="unknown image model 'nope'"):
        sparkamp.image_embedding("path", model="nope")


def test_bad_arguments_raise_config_errors_naming_them(spark, inputs, tmp_path):
    folder, _ = inputs
    df = spark.createDataFrame([("a", "x")], "id string, path string")
    with pytest.raises(sparkamp.ConfigError, match="key 'path_col': column 'nope' is not in"):
        sparkamp.embed_images(df, path_col="nope")
    with pytest.raises(sparkamp.ConfigError, match="unknown option\\(s\\) \\['factroy'\\]; accepted: .*factory"):
        sparkamp.build_index(df, str(tmp_path / "i"), factroy="Flat")
    with pytest.raises(sparkamp.ConfigError, match="key 'embeddings \\(embedding\\)': column 'embedding' is not in"):
        sparkamp.build_index(df, str(tmp_path / "i"))
    assert not (tmp_path / "i").exists()
    texts = spark.createDataFrame([("a", "x")], "id string, text string")
    with pytest.raises(sparkamp.ConfigError, match="key 'co_training': tfidf works with the methods that label"):
        sparkamp.assign_labels(texts, ["p", "q"], method="setfit", examples=texts, self_training=3,
                               co_training="tfidf")


def test_the_example_runs(tmp_path):
    """examples/notebook.py, as a user would run it: its own session, packaged data, printed results."""
    done = subprocess.run([sys.executable, str(ROOT / "examples" / "notebook.py"), "--images", "20", "--texts", "20",
                           "--work", str(tmp_path)], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert "embedded 20 images: {'ok': 20}" in lines
    assert any(line.startswith("index: IDMap2,Flat, 20 vectors of 1280-d, recall@10 1.000") for line in lines)
    assert any(line.startswith("nearest to ") for line in lines)
    assert "labelled 20 fortunes: {'ok': 20}" in lines
