"""Image decoding, preprocessing and CNN embedding, without Spark, on images made in the test."""
from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from tests.conftest import jpeg_bytes
from udfs import cnn, files, images
from udfs.status import DECODE_ERROR, EMPTY, READ_ERROR, TOO_LARGE, RowError

PREP = images.Preprocess(resize=256, crop=224)


def png_bytes(img: Image.Image, **save) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG", **save)
    return buf.getvalue()


def huge_header_png(width: int = 50_000, height: int = 50_000) -> bytes:
    """A valid 1x1 PNG whose IHDR claims width x height (a decompression bomb's header)."""
    data = bytearray(png_bytes(Image.new("RGB", (1, 1))))
    ihdr = 8 + 8  # signature, then chunk length + type
    data[ihdr:ihdr + 8] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[12:ihdr + 13]))
    data[ihdr + 13:ihdr + 17] = struct.pack(">I", crc)
    return bytes(data)


def status_of(data: bytes) -> str:
    with pytest.raises(RowError) as err:
        images.load_pixels(data, PREP)
    assert err.value.message  # a readable reason, always
    return err.value.status


def test_bad_bytes_become_specific_statuses():
    good = jpeg_bytes((300, 200))
    assert status_of(b"") == EMPTY
    assert status_of(good[: len(good) // 2]) == DECODE_ERROR
    assert status_of(np.random.default_rng(0).bytes(5000)) == DECODE_ERROR
    assert status_of(huge_header_png()) == TOO_LARGE
    small = images.Preprocess(256, 224, max_bytes=100)
    with pytest.raises(RowError, match="max_bytes") as err:
        images.load_pixels(good, small)
    assert err.value.status == TOO_LARGE


def test_every_image_mode_becomes_rgb_of_the_crop_size():
    sixteen = Image.fromarray(np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) * 16)
    palette = Image.new("P", (40, 30))
    palette.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    palette.info["transparency"] = 0
    cmyk = Image.new("CMYK", (50, 50), (0, 255, 255, 0))
    buf = io.BytesIO()
    cmyk.save(buf, "JPEG")
    gif = io.BytesIO()
    frames = [Image.new("P", (20, 20), i) for i in (1, 2)]
    frames[0].save(gif, "GIF", save_all=True, append_images=frames[1:])
    for data in (png_bytes(sixteen), png_bytes(palette), buf.getvalue(), gif.getvalue(),
                 png_bytes(Image.new("RGBA", (9, 9), (0, 0, 0, 0))), png_bytes(Image.new("L", (1, 1))),
                 png_bytes(Image.new("LA", (5, 5)))):
        pixels = images.load_pixels(data, PREP)
        assert pixels.shape == (224, 224, 3) and pixels.dtype == np.uint8
    transparent = images.load_pixels(png_bytes(Image.new("RGBA", (9, 9), (0, 0, 0, 0))), PREP)
    assert transparent.min() == 255  # alpha composited over white, not black
    red_cmyk = images.load_pixels(buf.getvalue(), PREP)[100, 100]
    assert red_cmyk[0] > 200 and red_cmyk[1] < 60


def test_exif_orientation_is_applied():
    img = Image.new("RGB", (80, 40), (255, 0, 0))
    img.paste((0, 0, 255), (0, 0, 40, 40))  # left half blue
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    buf = io.BytesIO()
    img.save(buf, "JPEG", exif=exif, quality=95)
    decoded = images.decode(buf.getvalue(), images.Preprocess(40, 40))
    assert decoded.size == (40, 80)
    top = np.asarray(decoded)[5, 20]
    assert top[2] > 200 and top[0] < 60  # blue, formerly on the left, is now on top


def test_read_file_errors(tmp_path):
    (tmp_path / "x.jpg").mkdir()
    with pytest.raises(RowError) as err:
        files.read_file(str(tmp_path / "x.jpg"), 1000)
    assert err.value.status == READ_ERROR and "directory" in err.value.message
    with pytest.raises(RowError) as err:
        files.read_file("file:" + str(tmp_path / "gone.jpg"), 1000)
    assert err.value.status == READ_ERROR
    (tmp_path / "a b%20c.jpg").write_bytes(b"abc")
    assert files.read_file("file:" + str(tmp_path / "a b%20c.jpg"), 1000) == b"abc"


@pytest.fixture(scope="module")
def lite0():
    return cnn.load_image_model(cnn.ImageModelSpec())


def test_packaged_model_embeds_l2_normalised_1280d(lite0):
    pixels = np.stack([images.load_pixels(jpeg_bytes((300, 200), c), PREP)
                       for c in ((200, 30, 30), (30, 200, 30), (205, 35, 25))])
    vectors = cnn.embed_batch(lite0, pixels)
    assert lite0.label == "efficientnet-lite0" and vectors.shape == (3, 1280)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    assert vectors[0] @ vectors[2] > vectors[0] @ vectors[1]  # near-identical reds are nearest
    one_by_one = np.concatenate([cnn.embed_batch(lite0, pixels[i:i + 1]) for i in range(3)])
    assert np.allclose(one_by_one, vectors, atol=1e-4)  # batch size does not change results


def test_intermediate_layer_and_torchvision_architectures(lite0):
    block = cnn.load_image_model(cnn.ImageModelSpec(layer="_blocks.10"))
    assert block.label == "efficientnet-lite0/_blocks.10" and block.dim == 112
    with pytest.raises(ValueError, match="layer 'nope' is not in efficientnet-lite0"):
        cnn.load_image_model(cnn.ImageModelSpec(layer="nope"))
    resnet = cnn.load_image_model(cnn.ImageModelSpec("resnet18", allow_random_weights=True))
    assert resnet.dim == 512 and resnet.label == "resnet18@random"


def test_torchvision_weights_from_a_local_state_dict(tmp_path):
    import torch
    import torchvision

    net = torchvision.models.get_model("mobilenet_v3_small", weights=None)
    torch.save(net.state_dict(), tmp_path / "w.pth")
    model = cnn.load_image_model(cnn.ImageModelSpec("mobilenet_v3_small", str(tmp_path / "w.pth")))
    assert model.dim == 576 and model.label.startswith("mobilenet_v3_small@")
    with pytest.raises(ValueError, match="weights_path .* is not a file"):
        cnn.check_spec(cnn.ImageModelSpec("resnet18", str(tmp_path / "none.pth")))
