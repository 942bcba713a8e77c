"""dedup and unique end to end on images made in the test from packaged photos and Fashion-MNIST."""
from __future__ import annotations

import io
import shutil

import numpy as np
from PIL import Image, ImageEnhance

from jobs import cli
from jobs.samples import datasets
from tests.conftest import common_args


def variants(img: Image.Image, rng) -> dict[str, Image.Image]:
    """The copies a duplicate finder must catch: re-encoded, resized, cropped, brightened."""
    w, h = img.size
    buf = io.BytesIO()
    img.convert("RGB").save(buf, "JPEG", quality=40)
    scale = rng.uniform(0.5, 0.9)
    cut = rng.uniform(0.02, 0.1) / 2
    return {"q40.jpg": Image.open(io.BytesIO(buf.getvalue())),
            "small.png": img.resize((int(w * scale), int(h * scale))),
            "crop.png": img.crop((int(w * cut), int(h * cut), w - int(w * cut), h - int(h * cut))),
            "bright.png": ImageEnhance.Brightness(img.convert("RGB")).enhance(rng.uniform(0.75, 1.25))}


def embed(tmp_path, folder, name="emb") -> str:
    out = str(tmp_path / name)
    assert cli.main(["embed-images", "--input", str(folder), "--output", out, *common_args(tmp_path)]) == 0
    return out


def test_dedup_finds_planted_copies_and_keeps_originals_apart(spark, tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "photos"
    folder.mkdir()
    photos = datasets.sample_photos()
    planted = {}
    for photo in photos:
        shutil.copy(photo, folder / photo.name)
    for photo in photos[:6]:
        for suffix, img in variants(Image.open(photo), rng).items():
            name = f"{photo.stem}-{suffix}"
            img.save(folder / name)
            planted[name] = photo.name
    shutil.copy(photos[6], folder / f"copy-of-{photos[6].name}")  # byte-identical
    planted[f"copy-of-{photos[6].name}"] = photos[6].name
    emb = embed(tmp_path, folder)
    out, pairs = str(tmp_path / "groups"), str(tmp_path / "pairs")
    assert cli.main(["dedup", "--embeddings", emb, "--output", out, "--set", f"pairs_output={pairs}",
                     *common_args(tmp_path)]) == 0

    groups = spark.read.parquet(out).toPandas()
    by_group = groups.groupby("group_id").id.apply(set).to_dict()
    expected = {}
    for copy, original in planted.items():
        expected.setdefault(original, {original}).add(copy)
    assert sorted(map(sorted, by_group.values())) == sorted(map(sorted, expected.values()))
    assert all(gid == min(members) for gid, members in by_group.items())  # deterministic representative
    reps = groups[groups.id == groups.group_id]
    assert np.allclose(reps.score_to_representative, 1, atol=1e-4)
    assert groups.score_to_representative.min() >= 0.8
    kinds = spark.read.parquet(pairs).toPandas().set_index(["id_a", "id_b"]).kind
    assert kinds[(f"copy-of-{photos[6].name}", photos[6].name)] == "exact"
    assert list((tmp_path / "_sparkamp_staging").iterdir()) == []  # the grouping's checkpoints removed


def test_unique_puts_the_planted_outlier_first(spark, tmp_path):
    folder = tmp_path / "items"
    folder.mkdir()
    images, labels = datasets.fashion_mnist(400, seed=2)
    for i in np.flatnonzero(labels == 7)[:30]:  # sneakers
        Image.fromarray(255 - images[i]).save(folder / f"sneaker-{i:04d}.png")
    astronaut = next(p for p in datasets.sample_photos() if p.stem == "astronaut")
    shutil.copy(astronaut, folder / "outlier.png")
    shutil.copy(astronaut, folder / "outlier-copy.png")  # an exact duplicate of the outlier
    emb = embed(tmp_path, folder)
    for count, out in ((False, "u1"), (True, "u2")):
        assert cli.main(["unique", "--embeddings", emb, "--output", str(tmp_path / out),
                         "--set", f"count_duplicates={str(count).lower()}", *common_args(tmp_path)]) == 0
    ranked = spark.read.parquet(str(tmp_path / "u1")).toPandas().sort_values("rank")
    assert len(ranked) == 32 and ranked["rank"].tolist() == list(range(1, 33))
    assert set(ranked.id[:2]) == {"outlier.png", "outlier-copy.png"}
    assert ranked.nearest_id.iloc[0].startswith("sneaker-") and ranked.nearest_score.iloc[0] < 0.6
    counted = spark.read.parquet(str(tmp_path / "u2")).toPandas().sort_values("rank")
    assert counted.id.iloc[0].startswith("sneaker-")
    assert counted.set_index("id").nearest_score["outlier.png"] > 0.999


def test_query_by_example_with_and_without_expansion(spark, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for photo in datasets.sample_photos():
        shutil.copy(photo, folder / photo.name)
    emb = embed(tmp_path, folder)
    index = str(tmp_path / "index")
    assert cli.main(["build-index", "--embeddings", emb, "--output", index, *common_args(tmp_path)]) == 0
    queries = tmp_path / "queries"
    queries.mkdir()
    rng = np.random.default_rng(1)
    astronaut = Image.open(folder / "astronaut.png")
    for suffix, img in variants(astronaut, rng).items():
        img.save(queries / f"astronaut-{suffix}")
    (queries / "broken.jpg").write_bytes(b"\xff\xd8 not really")
    # query_expansion=average: the deprecated spelling of rerank=average-qe; rerank_top (100) exceeds the
    # index's size, so the re-ranked candidates include faiss's "no result" slots
    for method in ("rerank=none", "query_expansion=average", "rerank=alpha-qe", "rerank=diffusion"):
        out = str(tmp_path / f"nb-{method.split('=')[1]}")
        assert cli.main(["search", "--index", index, "--query-images", str(queries), "--output", out,
                         "--k", "3", "--set", method, *common_args(tmp_path)]) == 0
        rows = spark.read.parquet(out).toPandas()
        top = rows[rows["rank"] == 1].set_index("query_id").neighbor_id
        assert len(top) == 4 and set(top) == {"astronaut.png"}, (method, top)
        assert len(rows) == 13 and (rows.status == "ok").sum() == 12
        (broken,) = rows[rows.status != "ok"].itertuples()  # the file that does not decode: a status row
        assert (broken.query_id, broken.status, broken.neighbor_id) == ("broken.jpg", "decode_error", None)
        assert "not a recognised image format" in broken.error

    undecodable = tmp_path / "undecodable"  # no query decodes: each one's reason still reaches the user
    undecodable.mkdir()
    (undecodable / "broken.jpg").write_bytes(b"\xff\xd8 not really")
    (undecodable / "empty.png").write_bytes(b"")
    (undecodable / "notes.png").write_text("not an image")
    out = str(tmp_path / "nb-undecodable")
    assert cli.main(["search", "--index", index, "--query-images", str(undecodable), "--output", out,
                     *common_args(tmp_path)]) == 0
    rows = spark.read.parquet(out).toPandas().sort_values("query_id")
    assert list(zip(rows.query_id, rows.status)) == [("broken.jpg", "decode_error"), ("empty.png", "empty"),
                                                     ("notes.png", "decode_error")]
    assert rows["rank"].isna().all() and rows.error.str.len().gt(5).all()

    texts = tmp_path / "docs.jsonl"
    texts.write_text('{"id": "sport", "text": "the team won the football match"}\n'
                     '{"id": "law", "text": "the court ruled on the contract"}\n'
                     '{"id": "food", "text": "a recipe for bread and soup"}\n')
    temb, tindex = str(tmp_path / "temb"), str(tmp_path / "tindex")
    assert cli.main(["embed-texts", "--input", str(texts), "--output", temb, *common_args(tmp_path)]) == 0
    assert cli.main(["build-index", "--embeddings", temb, "--output", tindex, *common_args(tmp_path)]) == 0
    (tmp_path / "q.txt").write_text("who scored the winning goal\njudges and lawyers\n")
    out = str(tmp_path / "tnb")
    assert cli.main(["search", "--index", tindex, "--query-texts", str(tmp_path / "q.txt"), "--output", out,
                     "--k", "1", *common_args(tmp_path)]) == 0
    top = spark.read.parquet(out).toPandas().set_index("query_id").neighbor_id.to_dict()
    assert top == {"who scored the winning goal": "sport", "judges and lawyers": "law"}
    # the text index's model cannot embed images: refused before any search
    assert cli.main(["search", "--index", tindex, "--query-images", str(queries), "--output",
                     str(tmp_path / "never"), *common_args(tmp_path)]) == 2
