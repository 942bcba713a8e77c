"""Loading a published index (checked against its manifest, memory-mapped where possible) and searching it."""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
from pyarrow import fs as pafs

from index import factory, manifest, store
from index.manifest import IndexIntegrityError, Manifest


@dataclass
class LoadedIndex:
    manifest: Manifest
    index: "object"            # faiss index, or IndexShards over several
    parts: list                # the loaded index files (one unless merge: none)
    sorted_ids: np.ndarray     # int64 faiss ids, ascending
    names: np.ndarray          # the table's string ids, aligned with sorted_ids
    direct_map: bool = False   # IVF parts can give vectors back by id


def _read_index(path: str, mmap: bool) -> "object":
    """On-disk IVF maps its `.ivfdata` itself (adding IO_FLAG_MMAP to it crashes faiss 1.15)."""
    import faiss

    flags = faiss.IO_FLAG_ONDISK_SAME_DIR
    if mmap:
        try:
            return faiss.read_index(path, flags | faiss.IO_FLAG_MMAP)
        except RuntimeError:  # formats without mmap support are read into memory
            pass
    return faiss.read_index(path, flags)


def load(folder: str, nprobe: int = 0, ef_search: int = 0) -> LoadedIndex:
    """Verifies every file's sha256 first, then loads; a dim/metric/count mismatch is an error."""
    import faiss
    import pyarrow.parquet as pq

    meta = manifest.read(folder)
    manifest.verify(folder, meta)
    local = folder if store.is_local(folder) else _fetch(folder, meta)
    local = store.resolve(local)[1]
    parts = [_read_index(os.path.join(local, name), mmap=meta.merge != "ondisk")
             for name in meta.index_files]
    expected_metric = factory.metric_type(meta.metric)
    for name, part in zip(meta.index_files, parts):
        if part.d != meta.dim or part.metric_type != expected_metric:
            raise IndexIntegrityError(f"{name} has dim {part.d} / metric {part.metric_type}; the manifest "
                                      f"says dim {meta.dim} / metric {meta.metric}")
    if sum(p.ntotal for p in parts) != meta.ntotal:
        raise IndexIntegrityError(f"{folder} holds {sum(p.ntotal for p in parts)} vectors, the manifest "
                                  f"says {meta.ntotal}")
    index = parts[0]
    if len(parts) > 1:
        index = faiss.IndexShards(meta.dim, False, False)
        for part in parts:
            index.add_shard(part)
    table = pq.read_table(os.path.join(local, manifest.IDS), columns=["faiss_id", "id"])
    faiss_ids = table.column("faiss_id").to_numpy()
    order = np.argsort(faiss_ids)
    if len(order) != meta.ntotal:
        raise IndexIntegrityError(f"{manifest.IDS} maps {len(order)} ids, the index holds {meta.ntotal}")
    names = np.asarray(table.column("id").to_pylist(), dtype=object)[order]
    loaded = LoadedIndex(meta, index, parts, faiss_ids[order], names)
    configure(loaded, nprobe or meta.nprobe, ef_search or meta.ef_search)
    return loaded


def load_shard(folder: str, name: str, sha256: str, nprobe: int = 0, ef_search: int = 0) -> "object":
    """One shard file of a sharded index (manifest `merge: none`), after checking the sha256 of that file
    only: a worker searching one shard never reads the others. Memory-mapped where the format allows;
    a remote file is copied to a local scratch dir first (faiss reads local files). Raises
    IndexIntegrityError when the file is missing or its sha256 differs. The check (and a remote file's
    copy) is done once per process and file version (size, mtime): a worker that opens the shard again
    for its next query block does not hash it again; a file changed since is hashed again."""
    uri = store.join(folder, name)
    fs, path = store.resolve(uri)
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.NotFound:
        raise IndexIntegrityError(f"{uri} is listed in the manifest but missing")
    version = (uri, info.size, info.mtime_ns, sha256)
    if version not in _CHECKED:
        if (actual := store.sha256(uri)) != sha256:
            raise IndexIntegrityError(f"{uri} has sha256 {actual[:12]}..., the manifest says {sha256[:12]}...: "
                                      "the file was changed or damaged")
        _CHECKED[version] = uri if store.is_local(uri) else store.local_copy(uri, store.scratch_dir())
    shard = _read_index(store.resolve(_CHECKED[version])[1], mmap=True)
    factory.set_search_params(shard, nprobe, ef_search)
    return shard


_CHECKED: dict[tuple, str] = {}  # (uri, bytes, mtime ns, sha256) of a shard checked here → its local path


def configure(loaded: LoadedIndex, nprobe: int, ef_search: int) -> None:
    for part in loaded.parts:
        factory.set_search_params(part, nprobe, ef_search)


def _fetch(folder: str, meta: Manifest) -> str:
    """Remote index: the files copied to a local scratch dir (faiss reads local files)."""
    local = store.scratch_dir()
    for name in [*manifest.expected_sha256(meta)]:
        store.local_copy(store.join(folder, name), local)
    fs, path = store.resolve(store.join(folder, manifest.IDS))
    os.makedirs(os.path.join(local, manifest.IDS), exist_ok=True)
    from pyarrow import fs as pafs

    for info in fs.get_file_info(pafs.FileSelector(path)):
        if info.base_name.endswith(".parquet"):
            store.local_copy(f"{folder.rstrip('/')}/{manifest.IDS}/{info.base_name}",
                             os.path.join(local, manifest.IDS))
    return local


def search(loaded: LoadedIndex, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(scores [n, k] float32, ids [n, k] object: the table's ids, None where fewer than k exist).

    Scores are inner products for `ip` (cosine on normalised vectors), squared L2 distances for `l2`.
    """
    scores, faiss_ids = search_ids(loaded, queries, k)
    return scores, names_of(loaded, faiss_ids)


def search_ids(loaded: LoadedIndex, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    return loaded.index.search(np.ascontiguousarray(queries, dtype=np.float32), k)


def names_of(loaded: LoadedIndex, faiss_ids: np.ndarray) -> np.ndarray:
    positions = np.clip(np.searchsorted(loaded.sorted_ids, faiss_ids), 0, len(loaded.sorted_ids) - 1)
    found = (faiss_ids >= 0) & (loaded.sorted_ids[positions] == faiss_ids)
    return np.where(found, loaded.names[positions], None)


def vectors_by_id(loaded: LoadedIndex, faiss_ids: np.ndarray) -> np.ndarray:
    """The stored vectors of `faiss_ids` [n, m] → [n, m, dim] float32 (zeros for -1).

    IVF indexes get a hash-table direct map on first use; IDMap2 indexes look ids up directly.
    """
    import faiss

    if not loaded.direct_map:
        for part in loaded.parts:
            if factory.is_ivf(part):
                faiss.extract_index_ivf(part).set_direct_map_type(faiss.DirectMap.Hashtable)
        loaded.direct_map = True
    flat = faiss_ids.reshape(-1)
    out = np.zeros((len(flat), loaded.manifest.dim), np.float32)
    valid = np.flatnonzero(flat >= 0)
    if len(loaded.parts) == 1:
        out[valid] = loaded.parts[0].reconstruct_batch(flat[valid].astype(np.int64))
    else:
        for row in valid:
            for part in loaded.parts:
                try:
                    out[row] = part.reconstruct(int(flat[row]))
                    break
                except RuntimeError:  # not in this shard
                    continue
    return out.reshape(*faiss_ids.shape, loaded.manifest.dim)


# Scores of one pair computed by different faiss kernels (BLAS for exact top-k, SIMD inside an IVF
# list) differed by up to 4e-7 on unit vectors of 32-1280 dims; a tie is 25x that, relative to the score
TIE_TOLERANCE = 1e-5


Result = tuple[np.ndarray, np.ndarray]  # (scores [q, k], ids [q, k]; -1 = none), as faiss returns them


def recall_at_k(exact: Result, approx: Result, k: int = 10) -> float:
    """Mean share of each query's exact top-k that the approximate top-k found, counting ties.

    `exact` and `approx` are (scores [q, >=k], ids [q, >=k]) as faiss returns them (id -1 = none).
    An approximate result is right when its id is in the exact top-k or its score ties the exact
    k-th score (|s - s_k| <= TIE_TOLERANCE * max(1, |s_k|)): with equal scores any of the tied
    items is an equally exact answer (20 identical vectors have 20 valid top-10s). A query with
    fewer than k vectors to find is scored on those it has (recall@min(k, n))."""
    hits = []
    for e_scores, e_ids, a_scores, a_ids in zip(exact[0], exact[1], approx[0], approx[1]):
        valid = e_ids[:k] >= 0
        wanted = int(valid.sum())
        if not wanted:
            continue
        last = float(e_scores[:k][valid][-1])
        tie = np.abs(a_scores[:k] - last) <= TIE_TOLERANCE * max(1.0, abs(last))
        right = (a_ids[:k] >= 0) & (np.isin(a_ids[:k], e_ids[:k][valid]) | tie)
        hits.append(min(wanted, int(right.sum())) / wanted)
    return float(np.mean(hits)) if hits else 0.0
