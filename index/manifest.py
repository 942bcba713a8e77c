"""The index manifest (`manifest.json`): what an index directory holds and how to check it."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from index import store

FORMAT_VERSION = 1
NAME = "manifest.json"
IDS = "ids.parquet"


class IndexIntegrityError(ValueError):
    """An index directory that does not match its manifest: never searched, always reported."""


@dataclass
class Manifest:
    model: str
    dim: int
    metric: str
    factory: str
    ntotal: int
    merge: str                                   # memory | ondisk | none (a sharded index)
    files: dict[str, str] = field(default_factory=dict)   # index file name → sha256
    # name, sha256, ntotal, bytes, min_id, max_id (faiss ids; ranges of hash-partitioned shards overlap)
    shards: list[dict[str, Any]] = field(default_factory=list)
    source: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    stage_seconds: dict[str, float] = field(default_factory=dict)
    recall_at_10: float | None = None
    nprobe: int = 0
    ef_search: int = 0
    factory_reason: str = ""
    merge_reason: str = ""                       # why merge: auto chose memory or none
    left_out: dict[str, int] = field(default_factory=dict)  # ok rows not indexed, by status (non_finite, ...)
    created_at: str = ""
    format_version: int = FORMAT_VERSION

    @property
    def index_files(self) -> list[str]:
        """The files a searcher loads: the merged index, or every shard (never `trained.faiss`, the empty
        trained index kept for incremental updates)."""
        if self.merge == "none":
            return [s["name"] for s in self.shards]
        return [name for name in self.files if name.endswith(".faiss") and name != "trained.faiss"]


def write(folder: str, manifest: Manifest) -> None:
    store.write_bytes(store.join(folder, NAME),
                      json.dumps(dataclasses.asdict(manifest), indent=2, sort_keys=True).encode())


def read(folder: str) -> Manifest:
    uri = store.join(folder, NAME)
    if not store.exists(uri):
        raise IndexIntegrityError(f"{folder} is not an index directory: no {NAME}")
    try:
        data = json.loads(store.read_bytes(uri))
    except json.JSONDecodeError as exc:
        raise IndexIntegrityError(f"{uri} is not valid JSON: {exc}") from None
    if data.get("format_version") != FORMAT_VERSION:
        raise IndexIntegrityError(f"{uri} has format_version {data.get('format_version')!r}; "
                                  f"this sparkamp reads {FORMAT_VERSION}")
    known = {f.name for f in dataclasses.fields(Manifest)}
    try:
        return Manifest(**{k: v for k, v in data.items() if k in known})
    except TypeError as exc:
        raise IndexIntegrityError(f"{uri} is missing fields: {exc}") from None


def expected_sha256(manifest: Manifest) -> dict[str, str]:
    """Every file the manifest vouches for, with its sha256."""
    digests = dict(manifest.files)
    digests.update({s["name"]: s["sha256"] for s in manifest.shards if manifest.merge == "none"})
    return digests


def verify(folder: str, manifest: Manifest) -> None:
    """Each listed file exists and has its recorded sha256 (checked before anything is read)."""
    for name, digest in expected_sha256(manifest).items():
        uri = store.join(folder, name)
        if not store.exists(uri):
            raise IndexIntegrityError(f"{uri} is listed in the manifest but missing")
        actual = store.sha256(uri)
        if actual != digest:
            raise IndexIntegrityError(f"{uri} has sha256 {actual[:12]}..., the manifest says "
                                      f"{digest[:12]}...: the file was changed or damaged")
