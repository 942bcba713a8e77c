"""Image descriptors: GeM pooling, flip averaging, multi-scale descriptors and a concatenated block change
the vectors, keep Fashion-MNIST's 5-NN agreement above the embed job's floor, and reach the job through
its keys."""
from __future__ import annotations

import re

import numpy as np
import pytest

from jobs import cli
from jobs.samples import datasets
from tests.conftest import common_args
from tests.test_embed_jobs import knn_agreement
from tests.test_precision import png
from udfs import cnn, images, pooling, whitening
from udfs.status import SpecError

FLOOR = 0.6  # test_embed_jobs' 5-NN agreement floor on Fashion-MNIST (10 classes: chance is 0.1)


@pytest.fixture(scope="module")
def fashion_pixels():
    """The 200 images the floor was set on (the `fashion` fixture's: seed 1, dark item on white)."""
    arrays, classes = datasets.fashion_mnist(200, seed=1)
    prep = cnn.load_image_model(cnn.ImageModelSpec()).prep
    return np.stack([images.load_pixels(png(255 - a), prep) for a in arrays]), [str(c) for c in classes]


def test_gem_and_flip_change_the_vectors_and_keep_the_floor(fashion_pixels):
    pixels, labels = fashion_pixels
    vectors = {}
    for spec in (cnn.ImageModelSpec(), cnn.ImageModelSpec(pooling="gem"), cnn.ImageModelSpec(flip=True)):
        model = cnn.load_image_model(spec)
        vectors[model.label] = cnn.embed_batch(model, pixels)
    assert list(vectors) == ["efficientnet-lite0", "efficientnet-lite0+gem3", "efficientnet-lite0+flip"]
    base = vectors["efficientnet-lite0"]
    for label, v in vectors.items():
        assert np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-5)
        print(label, "5-NN agreement", round(knn_agreement(v, labels, 5), 4))
        assert knn_agreement(v, labels, 5) > FLOOR, label
        if label != "efficientnet-lite0":
            cosine = (v * base).sum(axis=1)
            assert cosine.mean() < 0.999 and cosine.min() > 0.5, label  # changed, still the same images
    # flip averaging is the mean of the image's and its mirror's pooled features, then normalised
    flip = cnn.load_image_model(cnn.ImageModelSpec(flip=True))
    plain = cnn.load_image_model(cnn.ImageModelSpec())
    import torch

    x = (torch.from_numpy(pixels[:4]).permute(0, 3, 1, 2).float() - 127.5) / 127.5
    with torch.inference_mode():
        both = plain.net.extract_features(x).mean(dim=(2, 3)) + plain.net.extract_features(x.flip(3)).mean(dim=(2, 3))
    want = torch.nn.functional.normalize(both, dim=1).numpy()
    np.testing.assert_allclose(cnn.embed_batch(flip, pixels[:4]), want, atol=1e-5)


def test_gem_formula_and_concatenated_block(fashion_pixels):
    import torch

    x = torch.rand(2, 3, 4, 5) - 0.2
    expected = (x.clamp(min=pooling.GEM_EPS) ** 3).mean(dim=(2, 3)) ** (1 / 3)
    torch.testing.assert_close(pooling.pool(x, "gem", 3.0), expected)
    torch.testing.assert_close(pooling.pool(x.clamp(min=pooling.GEM_EPS), "gem", 1.0),
                               x.clamp(min=pooling.GEM_EPS).mean(dim=(2, 3)))
    pixels, labels = fashion_pixels
    model = cnn.load_image_model(cnn.ImageModelSpec(concat_layer="_blocks.10"))
    block = cnn.load_image_model(cnn.ImageModelSpec(layer="_blocks.10"))
    last = cnn.load_image_model(cnn.ImageModelSpec())
    assert (model.label, model.dim) == ("efficientnet-lite0+concat:_blocks.10", 1280 + 112)
    v = cnn.embed_batch(model, pixels[:8])
    parts = np.hstack([cnn.embed_batch(last, pixels[:8]), cnn.embed_batch(block, pixels[:8])]) / np.sqrt(2)
    np.testing.assert_allclose(v, parts, atol=1e-5)  # each part normalised, then the whole


def test_multi_scale_descriptor_by_hand():
    """scales (1, 1.414): decoded at the largest crop (317 px), resized to 224 for scale 1, each scale's
    pooled features L2-normalised, summed, normalised again."""
    import torch

    model = cnn.load_image_model(cnn.ImageModelSpec(scales=(1.0, 1.414)))
    assert (model.label, model.prep.resize, model.prep.crop, model.crop, model.dim) == \
        ("efficientnet-lite0+scales:1.0,1.414", 362, 317, 224, 1280)
    arrays, _ = datasets.fashion_mnist(4, seed=1)
    pixels = np.stack([images.load_pixels(png(255 - a), model.prep) for a in arrays])
    x = (torch.from_numpy(pixels).permute(0, 3, 1, 2).float() - 127.5) / 127.5
    small = torch.nn.functional.interpolate(x, size=(224, 224), mode="bilinear", antialias=True)
    with torch.inference_mode():
        parts = [torch.nn.functional.normalize(model.net.extract_features(v).mean(dim=(2, 3)), dim=1)
                 for v in (small, x)]
    want = torch.nn.functional.normalize(parts[0] + parts[1], dim=1).numpy()
    got = cnn.embed_batch(model, pixels)
    np.testing.assert_allclose(got, want, atol=1e-5)
    plain = cnn.load_image_model(cnn.ImageModelSpec())
    cosine = (got * cnn.embed_batch(plain, np.stack([images.load_pixels(png(255 - a), plain.prep)
                                                     for a in arrays]))).sum(axis=1)
    assert cosine.mean() < 0.999 and cosine.min() > 0.5  # changed, still the same images


@pytest.mark.parametrize("scales, engine, message", [
    ((), "torch", "a non-empty list of factors from 0.25 to 4"), ((1.0, 0.1), "torch", "got [1.0, 0.1]"),
    ((float("nan"),), "auto", "got [nan]"), ((1.0, 1.0), "torch", "repeats a factor"),
    ((1.0, 1.414), "onnx", "with engine onnx: a multi-scale descriptor runs in torch"),
])
def test_bad_scales_name_the_field(scales, engine, message):
    with pytest.raises(SpecError, match=re.escape(message)) as caught:
        cnn.check_spec(cnn.ImageModelSpec(scales=scales, engine=engine))
    assert caught.value.field == "scales"


def test_labels_parse_back_to_the_spec():
    spec = cnn.ImageModelSpec("efficientnet-lite1", layer="_blocks.19", precision="bf16", pooling="gem",
                              gem_p=2.5, flip=True, concat_layer="_blocks.14", scales=(1.0, 0.707, 1.414))
    label = cnn._with_layer("efficientnet-lite1", spec)
    assert label == "efficientnet-lite1/_blocks.19+gem2.5+flip+concat:_blocks.14+scales:1.0,0.707,1.414+bf16"
    assert cnn.spec_from_label(label) == spec
    assert cnn.spec_from_label("efficientnet-lite0/_blocks.10") == cnn.ImageModelSpec(layer="_blocks.10")
    with pytest.raises(ValueError, match="unknown part 'max'"):
        cnn.spec_from_label("efficientnet-lite0+max")


def test_embed_images_keys_reach_the_job(spark, tmp_path, fashion_pixels, capsys):
    folder = tmp_path / "images"
    arrays, _ = datasets.fashion_mnist(6, seed=5)
    folder.mkdir()
    for i, a in enumerate(arrays):
        (folder / f"{i}.png").write_bytes(png(a))
    out = tmp_path / "emb"
    assert cli.main(["embed-images", "--input", str(folder), "--output", str(out), "--set", "pooling=gem",
                     "--set", "flip=true", "--set", f"fit_whitening={tmp_path / 'w'}", "--set", "whiten_dim=3",
                     *common_args(tmp_path)]) == 0
    rows = spark.read.parquet(str(out)).toPandas().set_index("id").sort_index()
    assert set(rows.model) == {"efficientnet-lite0+gem3+flip"} and (rows.status == "ok").all()
    model = cnn.load_image_model(cnn.spec_from_label("efficientnet-lite0+gem3+flip"))
    pixels = np.stack([images.load_pixels((folder / name).read_bytes(), model.prep) for name in rows.index])
    vectors = cnn.embed_batch(model, pixels)
    np.testing.assert_allclose(np.stack(rows.embedding.to_numpy()), vectors, atol=1e-5)
    # the whitening learnt from the published rows in Spark is the numpy fit of those rows
    fitted, expected = whitening.load(str(tmp_path / "w")), whitening.fit(whitening.partial_sums([vectors]), 3)
    assert fitted.dims == (1280, 3)
    np.testing.assert_allclose(fitted.eigenvalues, expected.eigenvalues, rtol=1e-3)
    # several scales: the job's workers decode at the largest crop, as the library does
    assert cli.main(["embed-images", "--input", str(folder), "--output", str(tmp_path / "ms"), "--set",
                     "scales=[1, 1.414]", *common_args(tmp_path)]) == 0
    rows = spark.read.parquet(str(tmp_path / "ms")).toPandas().set_index("id").sort_index()
    assert set(rows.model) == {"efficientnet-lite0+scales:1.0,1.414"} and (rows.status == "ok").all()
    model = cnn.load_image_model(cnn.spec_from_label("efficientnet-lite0+scales:1.0,1.414"))
    pixels = np.stack([images.load_pixels((folder / name).read_bytes(), model.prep) for name in rows.index])
    np.testing.assert_allclose(np.stack(rows.embedding.to_numpy()), cnn.embed_batch(model, pixels), atol=1e-5)
    capsys.readouterr()
    for bad, named in ((["pooling=max"], "key 'pooling'"), (["concat_layer=_blocks.99"], "key 'concat_layer'"),
                       (["gem_p=0.5"], "key 'gem_p'"), (["scales=0,1"], "key 'scales': scales must be"),
                       (["scales=[1, 2]", "engine=openvino"], "key 'scales': scales [1.0, 2.0] with engine openvino")):
        sets = [arg for item in bad for arg in ("--set", item)]
        assert cli.main(["embed-images", "--input", str(folder), "--output", str(tmp_path / "x"), *sets,
                         *common_args(tmp_path)]) == 2
        assert named in capsys.readouterr().err
