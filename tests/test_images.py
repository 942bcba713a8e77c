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


def encode(img: Image.Image, fmt: str = "PNG", **save) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **save)
    return buf.getvalue()


def huge_header_png(width: int = 50_000, height: int = 50_000) -> bytes:
    """A valid 1x1 PNG whose IHDR claims width x height (a decompression bomb's header)."""
    data = bytearray(encode(Image.new("RGB", (1, 1))))
    ihdr = 8 + 8  # signature, then chunk length + type
    data[ihdr:ihdr + 8] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[12:ihdr + 13]))
    data[ihdr + 13:ihdr + 17] = struct.pack(">I", crc)
    return bytes(data)


def raw_png(samples: np.ndarray, bit_depth: int, color_type: int, *chunks: tuple[bytes, bytes]) -> bytes:
    """A PNG written chunk by chunk: [h, w] or [h, w, channels] samples at `bit_depth` (1..16), colour
    type 0 grey, 2 RGB, 3 palette, 4 grey + alpha; `chunks` (type, body) go between IHDR and IDAT.
    Pillow cannot write most of these (16-bit RGB, 2-bit grey, a tRNS key on 16-bit grey)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    s = samples.reshape(samples.shape[0], -1).astype(np.int64)
    if bit_depth == 16:
        rows = [row.astype(">u2").tobytes() for row in s]
    else:  # pack each row's samples big-endian, most significant bits first, to whole bytes
        rows = [np.packbits(np.unpackbits(row.astype(np.uint8)[:, None], axis=1)[:, 8 - bit_depth:]).tobytes()
                for row in s]
    header = struct.pack(">IIBBBBB", samples.shape[1], samples.shape[0], bit_depth, color_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + b"".join(chunk(k, v) for k, v in chunks)
            + chunk(b"IDAT", zlib.compress(b"".join(b"\0" + r for r in rows))) + chunk(b"IEND", b""))


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
    for data in (encode(sixteen), encode(palette), buf.getvalue(), gif.getvalue(),
                 encode(Image.new("RGBA", (9, 9), (0, 0, 0, 0))), encode(Image.new("L", (1, 1))),
                 encode(Image.new("LA", (5, 5)))):
        pixels = images.load_pixels(data, PREP)
        assert pixels.shape == (224, 224, 3) and pixels.dtype == np.uint8
    transparent = images.load_pixels(encode(Image.new("RGBA", (9, 9), (0, 0, 0, 0))), PREP)
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


# ---- the same picture, whatever its encoding ------------------------------------------------

GREY = np.random.default_rng(11).integers(0, 256, (12, 10)).astype(np.uint8)  # an 8-bit picture
GREY[0, 0], GREY[0, 1] = 0, 255  # its full range


def tiff_bytes(samples: np.ndarray, **options) -> bytes:
    import tifffile

    buf = io.BytesIO()
    tifffile.imwrite(buf, samples, **options)
    return buf.getvalue()


def decoded(data: bytes) -> np.ndarray:
    return np.asarray(images.decode(data, PREP))  # [h, w, 3] uint8, before resizing


def rgb_of(grey: np.ndarray) -> np.ndarray:
    return np.repeat(grey[..., None], 3, axis=-1)


TWINS = {  # GREY stored another way, each at its format's declared full range
    "png 16-bit grey (Pillow)": lambda: encode(Image.fromarray(GREY.astype(np.uint16) * 257)),
    "png 16-bit rgb": lambda: raw_png(rgb_of(GREY).astype(np.uint16) * 257, 16, 2),
    "png 16-bit grey+alpha": lambda: raw_png(np.dstack([GREY.astype(np.uint16) * 257,
                                                       np.full(GREY.shape, 65535)]), 16, 4),
    "tiff uint16": lambda: tiff_bytes(GREY.astype(np.uint16) * 257),
    "tiff uint16 big-endian": lambda: tiff_bytes(GREY.astype(np.uint16) * 257, byteorder=">"),
    "tiff uint16 rgb": lambda: tiff_bytes(rgb_of(GREY).astype(np.uint16) * 257, photometric="rgb"),
    "tiff int16": lambda: tiff_bytes((GREY.astype(np.int16) << 7) | (GREY.astype(np.int16) >> 1)),
    "tiff uint32": lambda: tiff_bytes(GREY.astype(np.uint32) * 0x01010101),
    "tiff int32 (Pillow I)": lambda: encode(Image.fromarray(GREY.astype(np.int32) << 23), "TIFF"),
    "tiff float32 0..1 (Pillow F)": lambda: encode(Image.fromarray(GREY / np.float32(255)), "TIFF"),
    "pgm maxval 65535": lambda: b"P5 10 12 65535\n" + (GREY.astype(">u2") * 257).tobytes(),
    "pgm maxval 1023": lambda: b"P5 10 12 1023\n" + (GREY.astype(">u2") * 4 + GREY // 64).astype(">u2").tobytes(),
}


@pytest.mark.parametrize("name", TWINS)
def test_wide_samples_reduce_by_their_declared_range_to_the_8_bit_picture(name):
    assert np.array_equal(decoded(TWINS[name]()), rgb_of(GREY))


def test_sixteen_bit_png_is_scaled_by_65535_never_by_its_values(lite0):
    """The issue's pair: a dark 16-bit PNG (brightest sample 255) was read as the 8-bit picture, and
    the same file with one sample at 256 as black (cosine 0.15 between the two)."""
    dark = GREY.astype(np.uint16)
    one_more = dark.copy()
    one_more[5, 5] = 256
    dark_pixels, one_more_pixels = decoded(raw_png(dark, 16, 0)), decoded(raw_png(one_more, 16, 0))
    assert dark_pixels.max() == 0 and one_more_pixels.max() == 1  # 255 / 65535 and 256 / 65535 of white
    assert np.count_nonzero(dark_pixels != one_more_pixels) == 3  # one pixel, one count, three channels
    bright = encode(Image.fromarray(GREY.astype(np.uint16) * 257))
    vectors = cnn.embed_batch(lite0, np.stack([images.load_pixels(d, PREP) for d in (
        raw_png(dark, 16, 0), raw_png(one_more, 16, 0), bright, encode(Image.fromarray(GREY)))]))
    assert vectors[0] @ vectors[1] > 0.999 and vectors[2] @ vectors[3] > 0.999
    assert vectors[0] @ vectors[3] < 0.9  # a dark picture is not the bright one


def test_signed_and_float_samples_clip_to_their_range():
    signed = np.array([[-128, -1, 0, 1, 64, 127]], dtype=np.int8)
    assert decoded(tiff_bytes(signed))[0, :, 0].tolist() == [0, 0, 0, 2, 129, 255]  # 0..127 → 0..255
    floats = np.array([[-0.5, 0.0, 0.5, 1.0, 7.0, np.nan]], dtype=np.float32)
    assert decoded(tiff_bytes(floats))[0, :, 0].tolist() == [0, 0, 128, 255, 255, 0]
    wide = np.array([[0, 1, 2**31 - 1, 2**32 - 1]], dtype=np.uint32)  # Pillow holds these as int32
    assert decoded(tiff_bytes(wide))[0, :, 0].tolist() == [0, 0, 127, 255]


def keyed_twin(rgb: np.ndarray, transparent: np.ndarray) -> np.ndarray:
    """The pixels of `rgb` with an alpha channel that is 0 where `transparent`, through to_rgb."""
    alpha = np.where(transparent, 0, 255).astype(np.uint8)
    return np.asarray(images.to_rgb(Image.fromarray(np.dstack([rgb, alpha]), "RGBA")))


def trns(*values: int) -> tuple[bytes, bytes]:
    return b"tRNS", struct.pack(f">{len(values)}H", *values)


KEY = int(GREY[3, 4])
COLOUR_KEYS = {  # (file, its pixels as 8-bit RGB, which of them the key makes transparent)
    "grey 8-bit": (raw_png(GREY, 8, 0, trns(KEY)), rgb_of(GREY), GREY == KEY),
    "grey 16-bit": (raw_png(GREY.astype(np.uint16) * 257, 16, 0, trns(KEY * 257)), rgb_of(GREY), GREY == KEY),
    "grey 4-bit": (raw_png(GREY >> 4, 4, 0, trns(KEY >> 4)), rgb_of((GREY >> 4) * 17), GREY >> 4 == KEY >> 4),
    "grey 2-bit": (raw_png(GREY >> 6, 2, 0, trns(1)), rgb_of((GREY >> 6) * 85), GREY >> 6 == 1),
    "grey 1-bit": (raw_png(GREY >> 7, 1, 0, trns(0)), rgb_of((GREY >> 7) * 255), GREY >> 7 == 0),
    "rgb 8-bit": (raw_png(rgb_of(GREY), 8, 2, trns(KEY, KEY, KEY)), rgb_of(GREY), GREY == KEY),
    "rgb 16-bit": (raw_png(rgb_of(GREY).astype(np.uint16) * 256 + 128, 16, 2, trns(*[KEY * 256 + 128] * 3)),
                   rgb_of(GREY), GREY == KEY),  # a low byte unlike the high one: Pillow's convert misses it
}


@pytest.mark.parametrize("name", COLOUR_KEYS)
def test_a_colour_key_is_transparent_over_white(name):
    data, rgb, transparent = COLOUR_KEYS[name]
    assert transparent.any() and not transparent.all()
    assert np.array_equal(decoded(data), keyed_twin(rgb, transparent))


def test_palette_transparency_one_index_or_an_alpha_table_is_composited_over_white():
    palette = np.random.default_rng(12).integers(0, 256, (16, 3)).astype(np.uint8)
    index = GREY % 16
    alpha = np.full(16, 255, np.uint8)
    alpha[[3, 5]] = 0, 128
    plte = (b"PLTE", palette.tobytes())
    for bits in (8, 4):
        table = decoded(raw_png(index, bits, 3, plte, (b"tRNS", alpha.tobytes())))
        over_white = np.asarray(images.to_rgb(Image.fromarray(np.dstack([palette[index], alpha[index]]), "RGBA")))
        assert np.array_equal(table, over_white)
        one = decoded(raw_png(index, bits, 3, plte, (b"tRNS", bytes([255, 255, 255, 0]))))  # index 3 only
        assert np.array_equal(one, keyed_twin(palette[index], index == 3))


def test_a_rotated_colour_keyed_png_keeps_its_key():
    exif = Image.Exif()
    exif[0x0112] = 6  # displayed rotated 90° clockwise
    data = encode(Image.fromarray(GREY.astype(np.uint16) * 257), transparency=KEY * 257, exif=exif)
    upright = np.rot90(keyed_twin(rgb_of(GREY), GREY == KEY), -1)  # turned 90° clockwise
    assert np.array_equal(decoded(data), upright)
