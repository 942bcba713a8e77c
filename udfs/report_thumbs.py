"""Report thumbnails: an image file → a small PNG or JPEG data URI (None for a file that cannot be read)."""
from __future__ import annotations

import base64
import io
from typing import Callable, Iterator

import pandas as pd
from PIL import Image

from udfs.files import read_file, source_uri
from udfs.images import Preprocess, decode
from udfs.status import RowError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff")
THUMBS_SCHEMA = "id string, thumb string, image boolean"
MAX_BYTES = 64 * 2**20
Frames = Iterator[pd.DataFrame]


def is_image_source(source: str | None) -> bool:
    """A source that names an image file (the embed-images job writes its path)."""
    return bool(source) and source.lower().endswith(IMAGE_SUFFIXES)


def thumbnail_uri(data: bytes, size: int) -> str:
    """Image bytes → `data:image/...;base64,...` at most `size` pixels a side; RowError if not an image."""
    encoded, mime = thumbnail_bytes(data, size)
    return f"data:{mime};base64," + base64.b64encode(encoded).decode("ascii")


def thumbnail_bytes(data: bytes, size: int) -> tuple[bytes, str]:
    """Image bytes → (encoded thumbnail at most `size` pixels a side, its MIME type); RowError if not
    an image. Small images stay PNG (sharp, and a few hundred bytes); larger ones become JPEG (quality 80).
    """
    img: Image.Image = decode(data, Preprocess(resize=size, crop=size))
    img.thumbnail((size, size), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    if img.width * img.height <= 48 * 48:
        img.save(buf, "PNG", optimize=True)
        return buf.getvalue(), "image/png"
    img.save(buf, "JPEG", quality=80, optimize=True)
    return buf.getvalue(), "image/jpeg"


def thumbnail_of(source: str | None, size: int) -> str | None:
    """The thumbnail of the image file at `source`; None when it is not an image or cannot be read."""
    if not is_image_source(source):
        return None
    try:
        return thumbnail_uri(read_file(source_uri(source), MAX_BYTES), size)
    except RowError:
        return None


def thumbnailer(size: int) -> Callable[[Frames], Frames]:
    """A mapInPandas function: (id, source) blocks → (id, thumb, image) blocks; thumb null when the
    source is not an image (image false) or could not be read or decoded (image true)."""
    def run(frames: Frames) -> Frames:
        for frame in frames:
            sources = frame["source"].tolist()
            yield pd.DataFrame({"id": frame["id"], "thumb": [thumbnail_of(s, size) for s in sources],
                                "image": [is_image_source(s) for s in sources]})
    return run
