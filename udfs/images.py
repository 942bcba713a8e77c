"""Image decoding and preprocessing: raw bytes → an RGB uint8 array, or a RowError."""
from __future__ import annotations

import io
import re
import struct
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

from udfs.status import DECODE_ERROR, EMPTY, TOO_LARGE, RowError

_TIFF_BITS_PER_SAMPLE, _TIFF_SAMPLE_FORMAT = 258, 339
_TIFF_KINDS = {1: "uint", 2: "int", 3: "float"}
_WIDE_MODES = {"I;16", "I;16B", "I;16L", "I;16N", "I", "F"}  # one band, not 8-bit: reduced here
_KEYED_MODES = {"1", "L", "I;16", "I;16B", "I;16L", "I;16N", "RGB"}  # a colour key (PNG tRNS) is a sample value


@dataclass(frozen=True)
class SampleFormat:
    """How the file stores one sample, as its header declares it: `kind` is "uint", "int" or "float"."""

    kind: str = "uint"
    bits: int = 8


@dataclass(frozen=True)
class Preprocess:
    """Resize the shorter side to `resize`, then centre-crop `crop` × `crop` (pixels)."""

    resize: int
    crop: int
    max_pixels: int = 64_000_000
    max_bytes: int = 64 * 2**20


def decode(data: bytes, prep: Preprocess) -> Image.Image:
    """An RGB image with EXIF orientation applied; JPEGs decoded at reduced size when that's enough."""
    if not data:
        raise RowError(EMPTY, "the file is empty (0 bytes)")
    if len(data) > prep.max_bytes:
        raise RowError(TOO_LARGE, f"{len(data)} bytes is over max_bytes = {prep.max_bytes}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            width, height = img.size
            if width * height > prep.max_pixels:
                raise RowError(TOO_LARGE, f"{width}x{height} = {width * height} pixels is over "
                                          f"max_pixels = {prep.max_pixels}")
            if img.format == "JPEG":
                img.draft("RGB", (prep.resize, prep.resize))  # DCT-domain downscale: decodes far less
            samples = sample_format(img)  # from the header, before loading and transposing forget it
            img = ImageOps.exif_transpose(img)
            img.load()
            return to_rgb(img, samples)
    except RowError:
        raise
    except Image.DecompressionBombError as exc:
        raise RowError(TOO_LARGE, str(exc)) from None
    except Image.UnidentifiedImageError:
        raise RowError(DECODE_ERROR, "not a recognised image format") from None
    except (OSError, ValueError, SyntaxError, EOFError, struct.error) as exc:
        raise RowError(DECODE_ERROR, f"cannot decode image: {exc}") from None


def sample_format(img: Image.Image) -> SampleFormat:
    """What one stored sample of an opened, not yet loaded, image is, as the file declares it.

    TIFF: BitsPerSample and SampleFormat (TIFF 6.0 tags 258, 339; MaxSampleValue is for statistics
    only, the spec says, so it is not used). Otherwise the mode's own range: `I;16*` 16-bit unsigned,
    `I` from PNG (older Pillow) or PPM (Pillow rescales maxval to 65535) 16-bit, any other `I` 32-bit
    signed, `F` float; and the bits of the raw mode Pillow unpacks from (`L;4`, `RGB;16B`), which the
    colour key of a PNG is written in.
    """
    if img.format == "TIFF" and hasattr(img, "tag_v2"):
        bits, kind = (_first(img.tag_v2.get(tag, 1)) for tag in (_TIFF_BITS_PER_SAMPLE, _TIFF_SAMPLE_FORMAT))
        return SampleFormat("float" if img.mode == "F" else _TIFF_KINDS.get(kind, "uint"), int(bits))
    if img.mode.startswith("I;16") or (img.mode == "I" and img.format in ("PNG", "PPM")):
        return SampleFormat("uint", 16)
    if img.mode in ("I", "F"):
        return SampleFormat("int" if img.mode == "I" else "float", 32)
    tile = getattr(img, "tile", None)  # an ImageFile before load(); a plain Image has none
    args = tile[0].args if tile else None
    rawmode = args if isinstance(args, str) else args[0] if isinstance(args, tuple) and args else ""
    bits = re.search(r";(\d+)", str(rawmode))
    return SampleFormat("uint", int(bits.group(1)) if bits else 8)


def _first(value: object) -> object:
    return value[0] if isinstance(value, tuple) and value else value


def to_rgb(img: Image.Image, samples: SampleFormat | None = None) -> Image.Image:
    """Any loaded image as 8-bit RGB; transparency (alpha, palette alpha, colour key) over white.

    Samples wider than 8 bits are reduced by the range `samples` declares (default: read from `img`),
    never by the values they hold: integers keep their 8 high bits (v >> (bits - 8); signed ones
    clip negatives to 0 first), as Pillow itself reduces 16-bit RGB, RGBA and LA, so a grey picture
    and its RGB twin give the same pixels; floats are 0..1 (the convention of TIFF and scikit-image),
    clipped, × 255, rounded.
    """
    samples = samples or sample_format(img)
    keyed = _colour_key(img, samples)
    if img.mode in _WIDE_MODES or (img.mode == "L" and samples.kind == "int"):
        img = Image.fromarray(_reduce(np.asarray(img), samples), "L")
    if keyed is not None:
        rgb = np.array(img.convert("RGB"))
        rgb[keyed] = 255
        return Image.fromarray(rgb, "RGB")
    if img.has_transparency_data:
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    return img if img.mode == "RGB" else img.convert("RGB")


def _reduce(values: np.ndarray, samples: SampleFormat) -> np.ndarray:
    """[h, w] samples of the declared format → [h, w] uint8 (see to_rgb). Our own code because
    scikit-image's img_as_ubyte guesses: it leaves 16-bit data whose maximum is below 256 unscaled."""
    if samples.kind == "float":
        return np.rint(np.clip(np.nan_to_num(values.astype(np.float32)), 0, 1) * 255).astype(np.uint8)
    kind = "u" if samples.kind == "uint" else "i"
    if values.dtype.kind != kind:  # Pillow holds unsigned 32-bit TIFF samples as int32, signed 8-bit as uint8
        values = values.view(np.dtype(f"{values.dtype.byteorder}{kind}{values.dtype.itemsize}"))
    bits = max(1, samples.bits - (samples.kind == "int"))  # the bits that hold values ≥ 0
    values = np.clip(values, 0, 2 ** bits - 1)
    if bits < 8:
        return np.rint(values.astype(np.float32) * (255 / (2 ** bits - 1))).astype(np.uint8)
    return (values >> (bits - 8)).astype(np.uint8)


def _colour_key(img: Image.Image, samples: SampleFormat) -> np.ndarray | None:
    """[h, w] bool: the pixels a colour key (PNG tRNS on grey or RGB) makes transparent, or None.
    Explicit because Pillow's conversions drop the key of 16-bit grey, compare 2- and 4-bit grey
    keys with rescaled samples, and miss 16-bit RGB keys. Pillow keeps only the high byte of 16-bit
    RGB samples, so such a key also covers the pixels that differ from it in the low byte alone."""
    key = img.info.get("transparency")
    if img.mode not in _KEYED_MODES or isinstance(key, bool) or not isinstance(key, (int, tuple)):
        return None
    values = np.asarray(img)
    if img.mode == "RGB":
        if not isinstance(key, tuple) or len(key) != 3:
            return None
        shift = max(0, samples.bits - 8)  # Pillow keeps the high byte of 16-bit samples
        return np.all(values == np.array([k >> shift for k in key], dtype=np.int64), axis=-1)
    if not isinstance(key, int):
        return None
    if img.mode == "1":
        return (values.astype(np.uint8) * 255) == key  # Pillow gives a 1-bit key as 0 or 255
    if img.mode == "L" and samples.bits < 8:
        key = key * 255 // (2 ** samples.bits - 1)  # Pillow scales 1/2/4-bit grey samples to 0..255
    return values == key


def resize_crop(img: Image.Image, prep: Preprocess) -> np.ndarray:
    """Shorter side → `resize`, centre `crop` square, in one resampling step. [crop, crop, 3] uint8."""
    width, height = img.size
    side = min(width, height) * prep.crop / prep.resize  # the crop's side in source pixels
    left, top = (width - side) / 2, (height - side) / 2
    out = img.resize((prep.crop, prep.crop), Image.Resampling.BILINEAR,
                     box=(left, top, left + side, top + side))
    return np.asarray(out, dtype=np.uint8)


def load_pixels(data: bytes, prep: Preprocess) -> np.ndarray:
    """Raw image bytes → [crop, crop, 3] uint8, or a RowError."""
    return resize_crop(decode(data, prep), prep)
