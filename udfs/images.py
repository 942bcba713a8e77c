"""Image decoding and preprocessing: raw bytes → an RGB uint8 array, or a RowError."""
from __future__ import annotations

import io
import struct
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

from udfs.status import DECODE_ERROR, EMPTY, TOO_LARGE, RowError

_SIXTEEN_BIT = {"I;16", "I;16B", "I;16L", "I;16N", "I"}


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
            img = ImageOps.exif_transpose(img)
            img.load()
            return to_rgb(img)
    except RowError:
        raise
    except Image.DecompressionBombError as exc:
        raise RowError(TOO_LARGE, str(exc)) from None
    except Image.UnidentifiedImageError:
        raise RowError(DECODE_ERROR, "not a recognised image format") from None
    except (OSError, ValueError, SyntaxError, EOFError, struct.error) as exc:
        raise RowError(DECODE_ERROR, f"cannot decode image: {exc}") from None


def to_rgb(img: Image.Image) -> Image.Image:
    """Grayscale, 16-bit, palette, CMYK and alpha images as 8-bit RGB (alpha over white)."""
    if img.mode in _SIXTEEN_BIT:
        arr = np.asarray(img, dtype=np.float32)
        top = 65535.0 if arr.max(initial=0) > 255 else 255.0
        img = Image.fromarray(np.clip(arr * (255.0 / top), 0, 255).astype(np.uint8))
    elif img.mode == "F":
        img = Image.fromarray(np.clip(np.asarray(img), 0, 255).astype(np.uint8))
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    return img if img.mode == "RGB" else img.convert("RGB")


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
