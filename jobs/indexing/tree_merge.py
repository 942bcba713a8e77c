"""The tree merge of a sharded index on the executors: groups of consecutive shards merged in parallel Spark
tasks into fewer, larger shards (autofaiss' `nb_indices_to_keep`); the driver only plans and collects."""
from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor

from index import shards, store
from jobs.indexing import layout

MERGED = "merged"  # the folder of the merged shards, beside `shards/`


def merge_groups(spark, folder: str, shard_rows: list[dict], keep: int) -> list[dict]:
    """`shard_rows` (assembly.add_shards' rows, by name) merged into `keep` shards
    `merged/shard-<group>.faiss`, one Spark task per group; each task checks its shards' sha256, appends the
    others to the first (index.shards.merge_files: IVF lists memory-mapped and appended, each vector copied
    once; the same index as merge_from into a copy of the trained empty index), writes the result and its
    sha256 marker. Returns the merged shards' rows in the same format (id ranges joined; no recall partials:
    assembly.fold_partials folds them before); `shard_rows` unchanged when there is nothing to merge. The
    input shards are left for the
    caller to delete once the manifest is written."""
    plan = layout.groups(len(shard_rows), keep)
    if len(plan) == len(shard_rows):
        return shard_rows
    inputs = [(number, [(store.join(folder, shard_rows[i]["shard"]), shard_rows[i]["sha256"]) for i in group])
              for number, group in enumerate(plan)]

    def merge_group(item: tuple[int, list[tuple[str, str]]]) -> tuple[int, str, int, int]:
        import faiss

        from udfs import cache

        cache.set_faiss_threads()
        number, parts = item
        scratch = store.scratch_dir()  # copies of remote shards (faiss maps local files); local ones are used in place
        try:
            paths = [store.local_copy(uri, scratch) for uri, _ in parts]
            with ThreadPoolExecutor(1) as hashing:  # hashlib frees the GIL: the check costs no wall time beside
                found = hashing.map(store.sha256, paths)  # the merge (1M 384-d: 1.3 s of sha256, 1.5 s of merge)
                merged = shards.merge_files(faiss.read_index(paths[0]), paths[1:])
                _check(parts, list(found))  # before anything is written
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        uri = store.join(folder, MERGED, shards.shard_name(number))
        digest = store.write_index(uri, merged)
        store.write_bytes(uri + ".sha256", digest.encode())
        return number, digest, int(merged.ntotal), store.size(uri)

    done = spark.sparkContext.parallelize(inputs, len(inputs)).map(merge_group).collect()
    return [_joined([shard_rows[i] for i in plan[number]], number, digest, ntotal, size)
            for number, digest, ntotal, size in sorted(done)]


def _check(parts: list[tuple[str, str]], found: list[str]) -> None:
    """RuntimeError naming the first shard (uri, sha256 when written) of `parts` whose sha256 is not the one
    `found` now: it changed after it was written."""
    for (uri, digest), now in zip(parts, found):
        if now != digest:
            raise RuntimeError(f"{uri} changed after it was written (sha256 mismatch)")


def _joined(rows: list[dict], number: int, digest: str, ntotal: int, size: int) -> dict:
    """The row of a merged shard: its file and its parts' id range."""
    if ntotal != sum(r["ntotal"] for r in rows):
        raise RuntimeError(f"merged shard {number} holds {ntotal} vectors, its parts {sum(r['ntotal'] for r in rows)}")
    return {"shard": f"{MERGED}/{shards.shard_name(number)}", "sha256": digest, "ntotal": ntotal, "bytes": size,
            "min_id": min(r["min_id"] for r in rows), "max_id": max(r["max_id"] for r in rows), "partials": None}
