"""Files outside Spark on any filesystem (local paths, file:, hdfs://, s3:// and Hadoop's s3a://) with pyarrow.

The one place sparkamp opens a file on the driver or in a partition function that is not a Spark read:
index files, manifests, the report page, run summaries, label heads, gold and query files. Locations are
written as users write them for Spark (Hadoop's schemes); `udfs/files.py` keeps a copy of the same
mapping for the workers (udfs may not import index), and a test holds the two to the same answers.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from urllib.parse import unquote

from pyarrow import fs as pafs

# Hadoop's S3 connectors name their scheme s3a (s3n before it); pyarrow's S3 filesystem is s3://
HADOOP_SCHEMES = {"s3a": "s3", "s3n": "s3"}


def local_path(uri: str) -> str | None:
    """The absolute local path a location names, or None when it is on another filesystem.

    A plain path is made absolute; `file:/x` (Hadoop's spelling) is `/x` as written; `file:///x` and
    `file://localhost/x` are RFC 8089 URIs, percent-decoded."""
    if uri.startswith("file://"):
        authority, _, path = uri[len("file://"):].partition("/")
        if authority not in ("", "localhost"):
            raise ValueError(f"{uri} names host {authority!r}; a file: URI here is a local file")
        return unquote("/" + path)
    if uri.startswith("file:"):
        return "/" + uri[len("file:"):].lstrip("/")
    if "://" in uri:
        return None
    return os.path.abspath(uri)


def pyarrow_uri(uri: str) -> str:
    """A remote location as pyarrow names it: Hadoop's `s3a://b/k` is `s3://b/k`; others unchanged."""
    scheme, sep, rest = uri.partition("://")
    return f"{HADOOP_SCHEMES.get(scheme.lower(), scheme)}{sep}{rest}" if sep else uri


def resolve(uri: str) -> tuple[pafs.FileSystem, str]:
    """(filesystem, path) of a local path or any URI pyarrow understands (see `local_path`, `pyarrow_uri`)."""
    path = local_path(uri)
    if path is not None:
        return pafs.LocalFileSystem(), path
    return pafs.FileSystem.from_uri(pyarrow_uri(uri))


def join(base: str, *names: str) -> str:
    return "/".join([base.rstrip("/"), *names])


def is_local(uri: str) -> bool:
    return local_path(uri) is not None


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


def size(uri: str) -> int:
    """Bytes of the file at `uri`."""
    fs, path = resolve(uri)
    return int(fs.get_file_info(path).size)


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


def upload(source: str, uri: str) -> None:
    """Copies the local file `source` to `uri` (nothing to do when it is that file)."""
    fs, path = resolve(uri)
    if isinstance(fs, pafs.LocalFileSystem) and os.path.abspath(source) == path:
        return
    fs.create_dir(os.path.dirname(path), recursive=True)
    with open(source, "rb") as src, fs.open_output_stream(path) as dst:
        shutil.copyfileobj(src, dst, 1 << 22)


def upload_dir(source: str, uri: str) -> None:
    """Copies every file under the local folder `source` to the same relative paths under `uri`."""
    for folder, _, names in os.walk(source):
        for name in names:
            local = os.path.join(folder, name)
            upload(local, join(uri, os.path.relpath(local, source)))


def download_dir(uri: str, target: str) -> str:
    """The folder at `uri` as a local folder: itself when local, else a copy made under `target`."""
    fs, path = resolve(uri)
    if isinstance(fs, pafs.LocalFileSystem):
        return path
    for info in fs.get_file_info(pafs.FileSelector(path, recursive=True)):
        if info.type == pafs.FileType.File:
            local = os.path.join(target, os.path.relpath(info.path, path))
            os.makedirs(os.path.dirname(local), exist_ok=True)
            with fs.open_input_stream(info.path) as src, open(local, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 22)
    return target


def delete_dir(uri: str) -> None:
    """Removes the folder at `uri` and everything under it; nothing when it does not exist."""
    fs, path = resolve(uri)
    if fs.get_file_info(path).type != pafs.FileType.NotFound:
        fs.delete_dir(path)


def move(source: str, target: str) -> None:
    """Renames `source` to `target` on one filesystem (a folder replaces nothing: `target` must not exist)."""
    fs, path = resolve(source)
    fs.move(path, resolve(target)[1])


def scratch_dir() -> str:
    return tempfile.mkdtemp(prefix="sparkamp-index-")
