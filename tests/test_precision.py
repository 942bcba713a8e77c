"""`precision: bf16`: embeddings stay within cosine 0.99 of fp32, keep their neighbours, and the jobs
record the precision in the `model` column and read it back (labels, incremental re-runs)."""
from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from jobs import cli
from jobs.samples import datasets
from tests.conftest import common_args
from tests.test_embed_jobs import knn_agreement
from tests.test_label_jobs import CONF, accuracy, balanced_split, label, write_split
from udfs import cnn, images, precision, texts


def png(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array).save(out, format="PNG")
    return out.getvalue()


def test_bf16_image_embeddings_match_fp32_and_keep_their_neighbours():
    arrays, classes = datasets.fashion_mnist(120, seed=3)
    fp32 = cnn.load_image_model(cnn.ImageModelSpec())
    bf16 = cnn.load_image_model(cnn.ImageModelSpec(precision="bf16"))
    assert (fp32.label, bf16.label) == ("efficientnet-lite0", "efficientnet-lite0+bf16")
    pixels = np.stack([images.load_pixels(png(a), fp32.prep) for a in arrays])
    a, b = cnn.embed_batch(fp32, pixels), cnn.embed_batch(bf16, pixels)
    assert b.dtype == np.float32 and np.allclose(np.linalg.norm(b, axis=1), 1, atol=1e-5)
    cosine = (a * b).sum(axis=1)
    assert cosine.min() >= 0.99 and cosine.mean() < 0.99999  # close, and really computed in bf16
    labels = [str(c) for c in classes]
    assert abs(knn_agreement(b, labels, 5) - knn_agreement(a, labels, 5)) <= 0.03


def test_bf16_sentence_embeddings_match_fp32():
    rows = datasets.fortunes()[:64]
    items = [r["text"] for r in rows]
    fp32 = texts.load_text_model(texts.TextModelSpec())
    bf16 = texts.load_text_model(texts.TextModelSpec(precision="bf16"))
    assert bf16.label == "all-MiniLM-L6-v2+bf16"
    a, b = texts.embed_texts(fp32, items, 8).embeddings, texts.embed_texts(bf16, items, 8).embeddings
    cosine = (a * b).sum(axis=1)
    assert cosine.min() >= 0.99 and not np.array_equal(a, b)


def test_labels_name_their_precision_and_parse_back():
    assert precision.split_label("efficientnet-lite0@1a2b3c4d/_blocks.15+bf16") == \
        ("efficientnet-lite0@1a2b3c4d/_blocks.15", "bf16")
    assert precision.split_label("my+model") == ("my+model", "fp32")
    assert cnn.spec_from_label("efficientnet-lite0+bf16") == cnn.ImageModelSpec(precision="bf16")
    assert texts.spec_from_label("all-MiniLM-L6-v2+bf16").precision == "bf16"
    assert texts.spec_from_label("glove-6b-50d").name == texts.WORD_VECTORS


@pytest.mark.parametrize("job, keys, named", [
    ("embed-images", ["precision=fp16"], "'precision'"),
    ("embed-texts", ["precision=bf16", "model=word-vectors"], "'precision'"),
])
def test_bad_precision_is_a_config_error(job, keys, named, tmp_path, capsys):
    (tmp_path / "in").mkdir()
    args = [job, "--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"), *common_args(tmp_path)]
    for pair in keys:
        args += ["--set", pair]
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert named in err and ("fp32" in err or "sentence encoders" in err)


def test_bf16_texts_through_the_jobs(spark, tmp_path):
    """embed-texts bf16 → zero-shot labels (label names embedded in bf16 too) → an incremental fp32
    re-run re-embeds every row, because the model column changed."""
    test, pool = balanced_split(pd.DataFrame(datasets.fortunes()), "category", 12, 1, seed=5)
    write_split(tmp_path, test, pool, "category")
    emb = tmp_path / "emb"
    base = ["embed-texts", "--input", str(tmp_path / "texts.parquet"), "--output", str(emb),
            *common_args(tmp_path)]
    assert cli.main([*base, "--set", "precision=bf16"]) == 0
    table = pd.read_parquet(emb)
    assert set(table.model) == {"all-MiniLM-L6-v2+bf16"} and (table.status == "ok").all()
    labels = label(tmp_path, tmp_path, "labels", "--embeddings", str(emb),
                   "--labels", str(CONF / "labels_fortunes.yaml"))
    assert accuracy(tmp_path, labels) >= 0.6  # chance is 0.2
    assert cli.main([*base, "--set", "incremental=true"]) == 0
    again = pd.read_parquet(emb)
    assert set(again.model) == {"all-MiniLM-L6-v2"} and len(again) == len(table)
