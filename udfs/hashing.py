"""Content hashes of files, computed on the workers (what incremental re-runs compare)."""
from __future__ import annotations

import hashlib
from typing import Callable, Iterator

import pandas as pd

from udfs import files
from udfs.status import RowError


def file_sha256(path: str) -> str:
    """The sha256 (hex) of a local file, read in 1 MiB chunks (what artefact manifests record)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_hasher(max_bytes: int) -> Callable[[Iterator[pd.DataFrame]], Iterator[pd.DataFrame]]:
    """A mapInPandas function: blocks of (id, path) → (id, _hash); null where a file cannot be read
    (such a row is then embedded again and gets its own status)."""
    def hash_partition(blocks: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for block in blocks:
            hashes = []
            for path in block["path"].tolist():
                try:
                    hashes.append(hashlib.sha256(files.read_file(path, max_bytes)).hexdigest())
                except RowError:
                    hashes.append(None)
            yield pd.DataFrame({"id": block["id"].to_numpy(), "_hash": hashes})
    return hash_partition
