"""What a request may send: a body under a byte limit, an upload's type told from its bytes, and each
refusal as an HTTP status with a message."""
from __future__ import annotations

import io
import warnings

from udfs.status import DECODE_ERROR, EMPTY, NO_KNOWN_WORDS, TOO_LARGE, RowError

RASTER_FORMATS = ("JPEG", "PNG", "GIF", "BMP", "WEBP", "TIFF")  # Pillow's names; nothing else is opened
FORM_OVERHEAD = 64 * 1024  # multipart boundaries and part headers around the file
STATUS = {EMPTY: 400, "wrong_kind": 400, TOO_LARGE: 413, "too_long": 413, "not_raster": 415,
          DECODE_ERROR: 422, NO_KNOWN_WORDS: 422}


def http_status(error: RowError) -> int:
    return STATUS.get(error.status, 400)


def body_limit(max_upload_bytes: int) -> int:
    """The most bytes a request body may have: the upload plus the multipart overhead around it.
    Enforced by Starlette's RequestBodyLimitMiddleware (FastAPI's `max_body_size`): a declared
    Content-Length over it is refused before reading (413, plain text `Content Too Large`), and bytes
    are counted as they arrive (413 with a JSON message naming the key)."""
    return max_upload_bytes + FORM_OVERHEAD


def sniff_image(data: bytes, max_bytes: int) -> str:
    """The raster format of `data`, told from its bytes (never the client's declared type); RowError
    for an empty or too-large file, an SVG, or anything Pillow does not open as one of RASTER_FORMATS."""
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise RowError(EMPTY, "the file is empty (0 bytes)")
    if len(data) > max_bytes:
        raise RowError(TOO_LARGE, f"the file is {len(data)} bytes; the limit is max_upload_bytes = {max_bytes}")
    head = data[:4096].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if b"<svg" in head or (head.startswith(b"<?xml") and b"svg" in head):
        raise RowError("not_raster", "an SVG is a vector drawing, not a raster image; export it as PNG or JPEG")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=RASTER_FORMATS) as img:
                return img.format
    except Image.DecompressionBombError as exc:
        raise RowError(TOO_LARGE, f"a decompression bomb: {exc}") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise RowError("not_raster", "not an image this app reads (accepted: JPEG, PNG, GIF, BMP, WebP, "
                                     "TIFF)") from None
