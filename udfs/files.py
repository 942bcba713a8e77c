"""Reading one input file on a worker: local paths, `file:` URIs or any pyarrow filesystem."""
from __future__ import annotations

import os
import stat
from contextlib import contextmanager
from typing import Iterator

from udfs.status import READ_ERROR, TOO_LARGE, RowError


def read_file(uri: str, max_bytes: int) -> bytes:
    """The raw bytes at `uri` (a local path, `file:` URI or any pyarrow filesystem URI)."""
    with _read_errors(uri):
        if _is_local(uri):
            path = _local_file(uri)
            _check_size(os.stat(path).st_size, max_bytes)
            with open(path, "rb") as fh:
                return fh.read()
        from pyarrow import fs as pafs

        filesystem, path = pafs.FileSystem.from_uri(uri)
        with filesystem.open_input_file(path) as fh:
            _check_size(fh.size(), max_bytes)
            return fh.read()


def open_stream(uri: str):
    """A binary stream (pyarrow NativeFile) of the file at `uri`, decompressed when its name says so
    (`.gz`, `.bz2`, `.zst`, `.lz4`, `.br`); RowError(read_error) when it cannot be opened."""
    from pyarrow import fs as pafs

    with _read_errors(uri):
        if _is_local(uri):
            return pafs.LocalFileSystem().open_input_stream(_local_file(uri), compression="detect")
        filesystem, path = pafs.FileSystem.from_uri(uri)
        return filesystem.open_input_stream(path, compression="detect")


def _is_local(uri: str) -> bool:
    return "://" not in uri or uri.startswith("file:")


def _local_file(uri: str) -> str:
    """The local path of `uri`, which must be a regular file (a fifo would block the task on open())."""
    path = "/" + uri[len("file:"):].lstrip("/") if uri.startswith("file:") else uri
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


def _check_size(size: int, max_bytes: int) -> None:
    if size > max_bytes:
        raise RowError(TOO_LARGE, f"{size} bytes is over max_bytes = {max_bytes}")
