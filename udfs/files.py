"""Input files: how a listed file is named (id, source, path) and read on a worker, and whether it is an image."""
from __future__ import annotations

import functools
import io
import os
import re
import stat
from contextlib import contextmanager
from typing import Iterator
from urllib.parse import quote, unquote, unquote_to_bytes

from udfs.status import NOT_AN_IMAGE, READ_ERROR, TOO_LARGE, RowError


def spelled(name: str | bytes) -> str:
    """A file name or path as valid UTF-8 text, one spelling per name: its bytes decoded as UTF-8, a byte
    that is not UTF-8 written `\\xNN` and a backslash written `\\\\` (so no two names share a spelling).

    `name` is bytes, or a str as os.walk gives it (undecodable bytes as surrogates, PEP 383).
    """
    raw = os.fsencode(name) if isinstance(name, str) else name
    return raw.replace(b"\\", b"\\\\").decode("utf-8", "backslashreplace")


def unspelled(text: str) -> bytes:
    """The bytes `spelled` wrote as `text` (`\\xNN` → that byte, `\\\\` → one backslash)."""
    return re.sub(rb"\\(\\|x[0-9a-f]{2})", lambda m: b"\\" if m[1] == b"\\" else bytes([int(m[1][1:], 16)]),
                  text.encode("utf-8"))


def source_uri(source: str) -> str:
    """A URI that opens the file a listed row's `source` names (`file:/a\\xe9.jpg`, `s3://b/a b.jpg`):
    its spelling undone, then percent-encoded (`file:///a%E9.jpg`, `s3://b/a%20b.jpg`)."""
    raw = unspelled(source)
    if raw.startswith(b"file:"):
        return file_uri(b"/" + raw[len(b"file:"):].lstrip(b"/"))
    scheme, _, rest = raw.partition(b"://")
    return scheme.decode("ascii") + "://" + quote(rest, safe="/")


def file_uri(path: str | bytes) -> str:
    """An absolute local path as a `file://` URI (RFC 8089), every byte that is not unreserved
    percent-encoded: ASCII, and the exact bytes come back (`read_file` opens it; pyarrow reads it too)."""
    return "file://" + quote(os.fsencode(path), safe="/")


def read_file(uri: str, max_bytes: int) -> bytes:
    """The raw bytes at `uri`: a `file://` URI (percent-decoded to the exact bytes of the name), a plain
    local path or Hadoop's `file:/x` form (as written), or any pyarrow filesystem URI.

    Raises RowError: READ_ERROR (missing, a directory, a fifo/socket/device, permission denied),
    TOO_LARGE (over `max_bytes`).
    """
    with _read_errors(uri):
        if _is_local(uri):
            path = _local_file(uri)
            _check_size(os.stat(path).st_size, max_bytes)
            with open(path, "rb") as fh:
                return fh.read()
        from pyarrow import fs as pafs

        filesystem, path = pafs.FileSystem.from_uri(pyarrow_uri(uri))
        with filesystem.open_input_file(path) as fh:
            _check_size(fh.size(), max_bytes)
            return fh.read()


def open_stream(uri: str):
    """A binary stream (pyarrow NativeFile) of the file at `uri`, decompressed when its name says so
    (`.gz`, `.bz2`, `.zst`, `.lz4`, `.br`); RowError(read_error) when it cannot be opened."""
    import pyarrow as pa
    from pyarrow import fs as pafs

    with _read_errors(uri):
        if _is_local(uri):  # opened by Python: a name's bytes need not be UTF-8, which pyarrow requires
            path = _local_file(uri)
            return pa.input_stream(open(path, "rb"), compression=_COMPRESSION.get(
                os.path.splitext(os.fsdecode(path))[1].lower()))
        filesystem, path = pafs.FileSystem.from_uri(pyarrow_uri(uri))
        return filesystem.open_input_stream(path, compression="detect")


_COMPRESSION = {".gz": "gzip", ".bz2": "bz2", ".zst": "zstd", ".lz4": "lz4", ".br": "brotli"}


# The same mapping as index/store.py's local_path and pyarrow_uri, kept here because udfs may not import
# index (DESIGN.md's layering); tests/test_layout.py holds the two to the same answers on a list of URIs.
HADOOP_SCHEMES = {"s3a": "s3", "s3n": "s3"}  # Hadoop's S3 connectors' schemes → pyarrow's s3://


def pyarrow_uri(uri: str) -> str:
    """A remote location as pyarrow names it: Hadoop's `s3a://b/k` is `s3://b/k`; others unchanged."""
    scheme, sep, rest = uri.partition("://")
    return f"{HADOOP_SCHEMES.get(scheme.lower(), scheme)}{sep}{rest}" if sep else uri


def _is_local(uri: str) -> bool:
    return "://" not in uri or uri.startswith("file:")


def _local_file(uri: str) -> bytes:
    """The local path of `uri` (`local_path`: the name's exact bytes), which must be a regular file (a
    fifo would block the task on open())."""
    path = local_path(uri)
    info = os.stat(path)
    if stat.S_ISDIR(info.st_mode):
        raise IsADirectoryError(path)
    if not stat.S_ISREG(info.st_mode):
        raise RowError(READ_ERROR, f"{uri} is not a regular file (a fifo, socket or device)")
    return path


@contextmanager
def _read_errors(uri: str) -> Iterator[None]:
    """OS errors reading `uri` as RowError(read_error) with the reason."""
    try:
        yield
    except RowError:
        raise
    except IsADirectoryError:
        raise RowError(READ_ERROR, f"{uri} is a directory, not a file") from None
    except PermissionError as exc:
        raise RowError(READ_ERROR, f"permission denied reading {uri}: {exc.strerror or exc}") from None
    except (OSError, ValueError) as exc:
        raise RowError(READ_ERROR, f"cannot read {uri}: {exc}") from None


def local_path(uri: str) -> bytes | None:
    """The exact bytes of the local path a location names, or None when it is on another filesystem: a
    plain path made absolute, `file:/x` as written, `file:///x` (or `file://localhost/x`) percent-decoded."""
    if uri.startswith("file://"):
        authority, _, path = uri[len("file://"):].partition("/")
        if authority not in ("", "localhost"):
            raise ValueError(f"{uri} names host {authority!r}; only local files are read this way")
        return unquote_to_bytes("/" + path)
    if uri.startswith("file:"):
        return os.fsencode("/" + uri[len("file:"):].lstrip("/"))
    return None if "://" in uri else os.fsencode(os.path.abspath(uri))


def _check_size(size: int, max_bytes: int) -> None:
    if size > max_bytes:
        raise RowError(TOO_LARGE, f"{size} bytes is over max_bytes = {max_bytes}")


@functools.lru_cache(maxsize=1)
def image_suffixes() -> frozenset[str]:
    """Lower-case suffixes (`.jpg`, `.jfif`, `.jp2`, `.avif`, ...) of the formats this Pillow opens:
    its own registry (`Image.registered_extensions()`), less those it only writes (`.pdf`)."""
    from PIL import Image

    return frozenset(ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN)


def is_image_name(name: str | bytes) -> bool:
    """Whether a file name ends in one of `image_suffixes()` (any case)."""
    lower = os.fsdecode(name).lower()
    return "." in lower and lower[lower.rindex("."):] in image_suffixes()


def image_format(data: bytes) -> str | None:
    """The image format Pillow recognises in `data` from its header (e.g. `JPEG`, `AVIF`), or None.
    Only the header is parsed (`Image.open` is lazy); a format with a damaged body is still named."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as img:
            return img.format
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError):
        return None


def require_image(name: str, data: bytes) -> None:
    """Refuses a listed file that is an image neither by name nor by content (a README, a Thumbs.db):
    RowError NOT_AN_IMAGE. A file named like an image goes on to decoding (and its own decode_error)."""
    if data and not is_image_name(unquote(name) if "://" in name else name) and image_format(data) is None:
        raise RowError(NOT_AN_IMAGE, "not an image: no image format recognised in its first bytes, and "
                                     "its name has no image extension")
