"""`engine: onnx | openvino`: the packaged models exported once per cache, run by ONNX Runtime and
OpenVINO, embed images and texts within cosine 0.999 of torch, through the batch functions and the jobs."""
from __future__ import annotations

import dataclasses
import io
import os
import threading

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

import sparkamp
from jobs import cli
from jobs.embedding import steps
from jobs.samples import datasets as demo_data
from tests.conftest import common_args
from udfs import cnn, engine_exports, engines, images, texts

FP32_ENGINES = ("onnx", "openvino")


@pytest.fixture(scope="module")
def engine_cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("engines"))


@pytest.fixture(scope="module")
def photos() -> list[bytes]:
    """12 Fashion-MNIST PNGs and 4 scikit-image photos, as files' bytes."""
    from skimage import data

    arrays, _ = demo_data.fashion_mnist(12, seed=4)
    arrays = [*arrays, data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
    out = []
    for array in arrays:
        buf = io.BytesIO()
        Image.fromarray(array).save(buf, format="PNG")
        out.append(buf.getvalue())
    return out


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def test_each_engine_embeds_images_like_torch(photos, engine_cache):
    torch_model = cnn.load_image_model(cnn.ImageModelSpec())
    pixels = np.stack([images.load_pixels(p, torch_model.prep) for p in photos])
    reference = cnn.embed_batch(torch_model, pixels)
    for engine in FP32_ENGINES:
        model = cnn.load_image_model(cnn.ImageModelSpec(engine=engine, engine_cache=engine_cache))
        vectors = cnn.embed_batch(model, pixels)
        assert model.label == "efficientnet-lite0" and model.dim == 1280 and vectors.dtype == np.float32
        assert cosines(reference, vectors).min() >= 0.999, engine
        assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
        one = cnn.embed_batch(model, pixels[:1])  # the batch axis is dynamic
        assert cosines(reference[:1], one).min() >= 0.999
    bf16 = cnn.load_image_model(cnn.ImageModelSpec(precision="bf16", engine="openvino", engine_cache=engine_cache))
    assert bf16.label == "efficientnet-lite0+bf16" and cosines(reference, cnn.embed_batch(bf16, pixels)).min() >= 0.99


def test_an_intermediate_layer_exports_what_torch_computes(photos, engine_cache):
    """resnet18 (random weights) cut at layer2 by the forward hook: the export holds the same cut."""
    model = cnn.load_image_model(cnn.ImageModelSpec("resnet18", layer="layer2", allow_random_weights=True,
                                                    engine="onnx", engine_cache=engine_cache))
    pixels = np.stack([images.load_pixels(p, model.prep) for p in photos[-4:]])
    on_torch = cnn.embed_batch(dataclasses.replace(model, runner=None), pixels)  # the same net, in torch
    assert model.dim == on_torch.shape[1] == 128  # layer2's channels, not the 512 of the pooled head
    assert cosines(on_torch, cnn.embed_batch(model, pixels)).min() >= 0.999


def test_each_engine_embeds_texts_like_torch(engine_cache):
    items = [r["text"] for r in demo_data.fortunes()[:40]] + ["word " * 400, "naïve café ☕", "x"]
    reference = texts.embed_texts(texts.load_text_model(texts.TextModelSpec()), items, 8)
    for engine, precision in (*((e, "fp32") for e in FP32_ENGINES), ("openvino", "bf16")):
        model = texts.load_text_model(texts.TextModelSpec(precision=precision, engine=engine,
                                                          engine_cache=engine_cache))
        batch = texts.embed_texts(model, items, 8)
        floor = 0.999 if precision == "fp32" else 0.99
        assert cosines(reference.embeddings, batch.embeddings).min() >= floor, (engine, precision)
        assert batch.truncated.tolist() == reference.truncated.tolist() and batch.truncated[-3]
        assert np.array_equal(batch.tokens, reference.tokens)
        assert model.label == ("all-MiniLM-L6-v2" if precision == "fp32" else "all-MiniLM-L6-v2+bf16")


def test_the_export_is_made_once_and_reused(engine_cache):
    spec = cnn.ImageModelSpec(engine="openvino", engine_cache=engine_cache)
    first = cnn.load_image_model(spec).runner.export
    stat = os.stat(first.path)
    again = cnn.load_image_model(dataclasses.replace(spec, engine="onnx")).runner.export
    assert again.path == first.path and again.seconds == 0.0  # one file for both engines, not re-made
    assert os.stat(first.path).st_mtime_ns == stat.st_mtime_ns
    exports = sorted(f for f in os.listdir(engine_cache) if f.startswith("efficientnet-lite0"))
    assert exports == [os.path.basename(first.path), os.path.basename(first.path) + ".lock"]


def test_concurrent_exports_make_one_file(tmp_path):
    """Three threads ask for the same uncached export at once: one exports under the lock, the others
    wait and read its file; no temporary file is left."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(6, 4), torch.nn.ReLU())
    graph = engine_exports.Graph("tiny", net, {"x": torch.zeros(2, 6)}, {"x": {0: "batch"}}, {"kind": "test"})
    results: list = []
    threads = [threading.Thread(target=lambda: results.append(engine_exports.cached(graph, str(tmp_path))))
               for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({r.path for r in results}) == 1 and sum(r.seconds > 0 for r in results) == 1
    assert sorted(os.listdir(tmp_path)) == sorted([os.path.basename(results[0].path),
                                                   os.path.basename(results[0].path) + ".lock"])
    runner = engines.Runner(results[0], engines.EngineOptions("onnx"), 1)
    x = np.random.default_rng(0).normal(size=(5, 6)).astype(np.float32)
    assert np.allclose(runner({"x": x}), net(torch.from_numpy(x)).detach().numpy(), atol=1e-6)


def test_embed_images_job_with_engine_onnx(spark, photos, engine_cache, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i, data in enumerate(photos):
        (folder / f"{i:02d}.png").write_bytes(data)
    (folder / "broken.png").write_bytes(photos[0][:100])
    out = tmp_path / "emb"
    assert cli.main(["embed-images", "--input", str(folder), "--output", str(out), *common_args(tmp_path),
                     "--set", "engine=onnx", "--set", f"engine_cache={engine_cache}"]) == 0
    rows = pd.read_parquet(out).set_index("id").sort_index()
    assert rows.status.to_dict() == {**{f"{i:02d}.png": "ok" for i in range(len(photos))},
                                     "broken.png": "decode_error"}
    assert set(rows.model) == {"efficientnet-lite0"}
    model = cnn.load_image_model(cnn.ImageModelSpec())
    reference = cnn.embed_batch(model, np.stack([images.load_pixels(p, model.prep) for p in photos]))
    assert cosines(reference, np.stack(rows.embedding[rows.status == "ok"])).min() >= 0.999


def test_embed_texts_job_with_engine_openvino(spark, engine_cache, tmp_path):
    items = demo_data.fortunes()[:30]
    pd.DataFrame(items)[["id", "text"]].to_parquet(tmp_path / "t.parquet")
    out = tmp_path / "emb"
    assert cli.main(["embed-texts", "--input", str(tmp_path / "t.parquet"), "--output", str(out),
                     *common_args(tmp_path), "--set", "engine=openvino",
                     "--set", f"engine_cache={engine_cache}"]) == 0
    rows = pd.read_parquet(out).set_index("id").loc[[r["id"] for r in items]]
    assert (rows.status == "ok").all() and set(rows.model) == {"all-MiniLM-L6-v2"}
    reference = texts.embed_texts(texts.load_text_model(texts.TextModelSpec()), [r["text"] for r in items], 8)
    assert cosines(reference.embeddings, np.stack(rows.embedding)).min() >= 0.999


def test_auto_resolves_to_the_measured_engine_and_word_vectors_run_no_model():
    assert engines.resolve("auto", "images", "fp32") == engines.AUTO["images", "fp32"]
    assert engines.resolve("auto", "texts", "bf16") == engines.AUTO["texts", "bf16"]
    assert engines.resolve("onnx", "images", "fp32") == "onnx"
    words = texts.TextModelSpec(texts.WORD_VECTORS, engine="auto")
    assert steps.prepare_engine(words) == steps.PreparedEngine(words, "torch", 0.0)  # nothing loaded


def test_the_public_api_takes_the_engine(spark, photos, engine_cache, tmp_path):
    """sparkamp.embed_images(engine=openvino) and the column function with engine=onnx: both within
    cosine 0.999 of torch; the driver prepared the export before the workers ran."""
    for i, data in enumerate(photos[:6]):
        (tmp_path / f"{i}.png").write_bytes(data)
    df = spark.createDataFrame([(f"{i}", str(tmp_path / f"{i}.png")) for i in range(6)], "id string, path string")
    rows = sparkamp.embed_images(df, path_col="path", engine="openvino", engine_cache=engine_cache).toPandas()
    column = df.withColumn("e", sparkamp.image_embedding("path", engine="onnx", engine_cache=engine_cache))
    by_column = column.select("id", "e.embedding", "e.status").toPandas().set_index("id").sort_index()
    rows = rows.set_index("id").sort_index()
    assert rows.status.tolist() == by_column.status.tolist() == ["ok"] * 6
    model = cnn.load_image_model(cnn.ImageModelSpec())
    reference = cnn.embed_batch(model, np.stack([images.load_pixels(p, model.prep) for p in photos[:6]]))
    assert cosines(reference, np.stack(rows.embedding)).min() >= 0.999
    assert cosines(reference, np.stack(by_column.embedding)).min() >= 0.999


@pytest.mark.parametrize("job, keys, named", [
    ("embed-images", ["engine=tensorrt"], ["'engine'", "auto", "onnx", "openvino"]),
    ("embed-images", ["engine=onnx", "precision=bf16"], ["'engine'", "precision bf16", "openvino"]),
    ("embed-texts", ["engine=onnx", "model=word-vectors"], ["'engine'", "sentence encoders"]),
    ("embed-texts", ["engine_cache=FILE"], ["'engine_cache'", "not a folder"]),
])
def test_bad_engine_keys_are_config_errors(job, keys, named, tmp_path, capsys):
    (tmp_path / "in").mkdir()
    (tmp_path / "file").write_text("x")
    args = [job, "--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"), *common_args(tmp_path)]
    for pair in keys:
        args += ["--set", pair.replace("FILE", str(tmp_path / "file"))]
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert all(word in err for word in named) and "Traceback" not in err


@pytest.mark.parametrize("keys, named", [
    (["engine=onnx", "layer=nope"], ["key 'layer'", "top-level modules"]),
    (["engine=openvino", "engine_cache=FILE/engines"], ["key 'engine_cache'", "Not a directory", "can write"]),
])
def test_what_the_driver_finds_before_any_task_is_a_config_error(spark, photos, keys, named, tmp_path, capsys,
                                                                 caplog):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.png").write_bytes(photos[0])
    (tmp_path / "file").write_text("x")
    args = ["embed-images", "--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"),
            *common_args(tmp_path), "--set", f"engine_cache={tmp_path / 'engines'}"]
    for pair in keys:
        args += ["--set", pair.replace("FILE", str(tmp_path / "file"))]
    assert cli.main(args) == 2
    said = capsys.readouterr().err + caplog.text  # the CLI's log handler holds the first test's stderr
    assert all(word in said for word in named) and not any(r.exc_info for r in caplog.records)
    assert not (tmp_path / "out").exists() and not (tmp_path / "engines").exists()  # nothing exported
