"""Reading one input file's bytes on a worker: local paths, `file:` URIs or any pyarrow filesystem."""
from __future__ import annotations

import os
import stat

from udfs.status import READ_ERROR, TOO_LARGE, RowError


def read_file(uri: str, max_bytes: int) -> bytes:
    """The raw bytes at `uri` (a local path, `file:` URI or any pyarrow filesystem URI)."""
    try:
        if "://" not in uri or uri.startswith("file:"):
            path = "/" + uri[len("file:"):].lstrip("/") if uri.startswith("file:") else uri
            info = os.stat(path)
            if stat.S_ISDIR(info.st_mode):
                raise IsADirectoryError(path)
            if not stat.S_ISREG(info.st_mode):  # a fifo would block the task forever on open()
                raise RowError(READ_ERROR, f"{uri} is not a regular file (a fifo, socket or device)")
            _check_size(info.st_size, max_bytes)
            with open(path, "rb") as fh:
                return fh.read()
        from pyarrow import fs as pafs

        filesystem, path = pafs.FileSystem.from_uri(uri)
        with filesystem.open_input_file(path) as fh:
            _check_size(fh.size(), max_bytes)
            return fh.read()
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
