"""Moving index files to and from any filesystem (local paths, file:, hdfs://, s3://) with pyarrow."""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile

from pyarrow import fs as pafs


def resolve(uri: str) -> tuple[pafs.FileSystem, str]:
    """(filesystem, path) for a local path or any URI pyarrow understands."""
    if "://" not in uri or uri.startswith("file:"):
        path = "/" + uri[len("file:"):].lstrip("/") if uri.startswith("file:") else os.path.abspath(uri)
        return pafs.LocalFileSystem(), path
    return pafs.FileSystem.from_uri(uri)


def join(base: str, *names: str) -> str:
    return "/".join([base.rstrip("/"), *names])


def is_local(uri: str) -> bool:
    return isinstance(resolve(uri)[0], pafs.LocalFileSystem)


def write_bytes(uri: str, data: bytes) -> str:
    """Writes via a temporary name then a rename, so a reader never sees half a file; returns sha256."""
    fs, path = resolve(uri)
    fs.create_dir(os.path.dirname(path), recursive=True)
    tmp = f"{os.path.dirname(path)}/.{os.path.basename(path)}.tmp"
    with fs.open_output_stream(tmp) as out:
        out.write(data)
    fs.move(tmp, path)
    return hashlib.sha256(data).hexdigest()


def write_index(uri: str, index: "object") -> str:
    """faiss.write_index streamed to any filesystem through a temporary name, hashing as it goes: no
    in-memory copy of the serialized index (a shard of n vectors needs one copy, not three)."""
    import faiss

    fs, path = resolve(uri)
    fs.create_dir(os.path.dirname(path), recursive=True)
    tmp = f"{os.path.dirname(path)}/.{os.path.basename(path)}.tmp"
    sha = hashlib.sha256()
    with fs.open_output_stream(tmp) as out:
        def write(chunk: bytes) -> int:
            sha.update(chunk)
            out.write(chunk)
            return len(chunk)

        faiss.write_index(index, faiss.PyCallbackIOWriter(write))
    fs.move(tmp, path)
    return sha.hexdigest()


def read_bytes(uri: str) -> bytes:
    fs, path = resolve(uri)
    with fs.open_input_stream(path) as src:
        return src.read()


def exists(uri: str) -> bool:
    fs, path = resolve(uri)
    return fs.get_file_info(path).type != pafs.FileType.NotFound


def sha256(uri: str) -> str:
    fs, path = resolve(uri)
    digest = hashlib.sha256()
    with fs.open_input_stream(path) as src:
        while block := src.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()


def local_copy(uri: str, folder: str) -> str:
    """A local path for `uri`: itself when local, else a copy under `folder`."""
    fs, path = resolve(uri)
    if isinstance(fs, pafs.LocalFileSystem):
        return path
    target = os.path.join(folder, os.path.basename(path))
    with fs.open_input_stream(path) as src, open(target, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 22)
    return target


def upload(local_path: str, uri: str) -> None:
    fs, path = resolve(uri)
    if isinstance(fs, pafs.LocalFileSystem) and os.path.abspath(local_path) == path:
        return
    fs.create_dir(os.path.dirname(path), recursive=True)
    with open(local_path, "rb") as src, fs.open_output_stream(path) as dst:
        shutil.copyfileobj(src, dst, 1 << 22)


def scratch_dir() -> str:
    return tempfile.mkdtemp(prefix="sparkamp-index-")
