"""The tree merge of a sharded index on the executors: groups of consecutive shards merged in parallel Spark
tasks into fewer, larger shards (autofaiss' `nb_indices_to_keep`); the driver only plans and collects."""
from __future__ import annotations

import hashlib
from typing import Iterator

import numpy as np

from index import shards, store
from jobs.indexing import layout

MERGED = "merged"  # the folder of the merged shards, beside `shards/`


def merge_groups(spark, folder: str, trained: bytes, shard_rows: list[dict], keep: int, k: int,
                 metric: str) -> list[dict]:
    """`shard_rows` (assembly.add_shards' rows, by name) merged into `keep` shards
    `merged/shard-<group>.faiss`, one Spark task per group; each task reads its shards, merges them into a
    copy of the trained empty index (index.shards.merge_in_memory: faiss merge_from, IVF lists via
    extract_index_ivf), writes the result and its sha256 marker. Returns the merged shards' rows in the
    same format (partial top-k merged per nprobe, id ranges joined); `shard_rows` unchanged when there is
    nothing to merge. The input shards are left for the caller to delete once the manifest is written."""
    plan = layout.groups(len(shard_rows), keep)
    if len(plan) == len(shard_rows):
        return shard_rows
    inputs = [(number, [(store.join(folder, shard_rows[i]["shard"]), shard_rows[i]["sha256"]) for i in group])
              for number, group in enumerate(plan)]
    shipped = spark.sparkContext.broadcast(trained)

    def merge_group(item: tuple[int, list[tuple[str, str]]]) -> tuple[int, str, int, int]:
        from udfs import cache

        cache.set_faiss_threads()
        number, parts = item
        merged = shards.merge_in_memory(shipped.value, _checked(parts))
        uri = store.join(folder, MERGED, shards.shard_name(number))
        digest = store.write_index(uri, merged)
        store.write_bytes(uri + ".sha256", digest.encode())
        return number, digest, int(merged.ntotal), store.size(uri)

    done = spark.sparkContext.parallelize(inputs, len(inputs)).map(merge_group).collect()
    shipped.unpersist()
    return [_joined([shard_rows[i] for i in plan[number]], number, digest, ntotal, size, k, metric)
            for number, digest, ntotal, size in sorted(done)]


def _checked(parts: list[tuple[str, str]]) -> Iterator["object"]:
    """The shards at (uri, sha256) read one at a time; RuntimeError when one changed after it was written."""
    for uri, digest in parts:
        data = store.read_bytes(uri)
        if hashlib.sha256(data).hexdigest() != digest:
            raise RuntimeError(f"{uri} changed after it was written (sha256 mismatch)")
        yield shards.deserialize(data)


def _joined(rows: list[dict], number: int, digest: str, ntotal: int, size: int, k: int, metric: str) -> dict:
    """The row of a merged shard: its file, and its parts' top-k (exact and per nprobe) merged."""
    if ntotal != sum(r["ntotal"] for r in rows):
        raise RuntimeError(f"merged shard {number} holds {ntotal} vectors, its parts {sum(r['ntotal'] for r in rows)}")
    queries = len(rows[0]["ids"]) // 8 // k
    exact_scores, exact_ids = _merged(rows, "scores", "ids", queries, k, metric)
    approx_scores, approx_ids = _merged(rows, "approx_scores", "approx_ids", queries, k, metric)
    return {"shard": f"{MERGED}/{shards.shard_name(number)}", "sha256": digest, "ntotal": ntotal, "bytes": size,
            "min_id": min(r["min_id"] for r in rows), "max_id": max(r["max_id"] for r in rows),
            "scores": exact_scores, "ids": exact_ids, "approx_scores": approx_scores, "approx_ids": approx_ids}


def _merged(rows: list[dict], scores: str, ids: str, queries: int, k: int, metric: str) -> tuple[bytes, bytes]:
    """Byte columns [layers, queries, k] of several rows merged layer by layer (one layer per nprobe)."""
    stacks = [(np.frombuffer(r[scores], np.float32).reshape(-1, queries, k),
               np.frombuffer(r[ids], np.int64).reshape(-1, queries, k)) for r in rows]
    merged = [shards.merge_topk([(s[layer], i[layer]) for s, i in stacks], k, metric)
              for layer in range(len(stacks[0][0]))]
    return np.stack([m[0] for m in merged]).tobytes(), np.stack([m[1] for m in merged]).tobytes()
