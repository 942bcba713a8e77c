"""The partition functions (mapInPandas) that write index shards, scan and search: thin shells around
`index.shards` and `index.searcher`, and the helpers they share."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np
import pandas as pd

from index import manifest, recall, searcher, shards, store, vectors
from jobs.tables.ids import id_hash
from udfs import reranking
from udfs.batches import rebatch
from udfs.reranking import Rerank

SHARD_SCHEMA = ("shard string, sha256 string, ntotal long, bytes long, min_id long, max_id long, "
                "scores binary, ids binary, approx_scores binary, approx_ids binary, left_out array<long>")
SHARD_BLOCK_ROWS = 8192  # vectors added (and exactly scanned) per block: fewer, larger blocks are faster
NO_NEIGHBOURS = "no_neighbours"
MAX_INT64 = 0x7FFFFFFFFFFFFFFF
ID_COLUMNS = ("faiss_id", "id", "content_hash")  # of index.manifest.IDS: faiss ids → the table's rows
Frames = Iterator[pd.DataFrame]


@dataclass(frozen=True)
class ShardTask:
    """What every shard-writing task is told: where shards go, the recall top-k and metric, whether to
    reuse finished shards, the search settings its partial top-k are taken at, and the vectors' dim."""

    folder: str
    k: int
    metric: str
    resume: bool
    nprobes: tuple[int, ...] = (0,)   # ascending (index.recall.nprobe_candidates)
    ef_search: int = 0
    dim: int = 0                      # a vector of another length is left out as wrong_dim; 0 = not checked
    ids: bool = False                 # also write the shard's usable rows' (faiss_id, id, content_hash) as
                                      # a part of ids.parquet (the rows then carry id and content_hash)


def faiss_id_column():
    """Stable int64 ids from the table's string ids (ids.id_hash: xxhash64, non-negative): any partitioning
    agrees."""
    return id_hash().alias("faiss_id")


def vectors_of(frame: pd.DataFrame) -> np.ndarray:
    return np.stack(frame["embedding"].to_numpy()).astype(np.float32, copy=False)


def shard_writer(trained: Any, queries: Any, task: ShardTask) -> Callable[[Iterator[Any]], Iterator[Any]]:
    """A mapInArrow function: one partition of (faiss_id, embedding) Arrow record batches, in any order (read
    into numpy blocks of at least SHARD_BLOCK_ROWS without pandas; a row whose vector fails
    index.vectors.check is left out and counted, so no pass over the table is made only to check them) →
    one shard file, the exact top-k of the recall queries over it (so ground truth costs no extra pass over
    the data) and the shard's own
    approximate top-k at each of `task.nprobes` (index.recall.partial_topk: recall is measured without
    loading the whole index anywhere).

    The shard is `index.shards.fill` of a copy of the trained empty index, written as
    `shards/shard-<partition>.faiss` with a `.sha256` done-marker written last; with `resume`, a shard
    whose marker exists is reused (read back, scanned). `trained` (bytes) and `queries` (float32 [q, dim])
    are Spark broadcasts: shipped once per executor. Returns one SHARD_SCHEMA row (partials as float32 /
    int64 [len(nprobes), q, k] bytes; `left_out`: the rows left out by status, in index.vectors.STATUSES
    order), none when the partition is empty, and a row without a shard (name "", ntotal 0) when it held
    only rows left out. With `task.ids` the batches also hold id and content_hash, and the shard's rows
    (ID_COLUMNS) are written as `ids.parquet/part-<partition>.parquet`: the ids of exactly its vectors.
    """
    def write_shard(batches: Iterator[Any]) -> Iterator[Any]:
        import pyarrow as pa
        from pyspark import TaskContext

        from udfs import cache

        cache.set_faiss_threads()
        part = TaskContext.get().partitionId()
        name = f"shards/{shards.shard_name(part)}"
        uri = store.join(task.folder, name)
        marker = uri + ".sha256"
        reuse = task.resume and store.exists(marker)
        scan, seen = shards.ExactTopK(queries.value, task.k, task.metric), _Ids(task.dim, task.metric, task.ids)
        blocks = scan.passing(seen.blocks(batches))
        if reuse:
            for _ in blocks:
                pass
        else:
            index = shards.fill(trained.value, blocks)
        if seen.count == 0:
            if seen.left_out.any():  # no shard, but its rows are counted
                yield pa.RecordBatch.from_pylist([{"shard": "", "ntotal": 0, "left_out": seen.left_out.tolist()}],
                                                 schema=_shard_schema())
            return
        if reuse:
            digest = store.read_bytes(marker).decode().strip()
            index = shards.deserialize(store.read_bytes(uri))
        else:
            digest = store.write_index(uri, index)
            store.write_bytes(marker, digest.encode())
        if task.ids:  # the ids of exactly the vectors in the shard: no pass of their own
            store.write_bytes(store.join(task.folder, manifest.IDS, f"part-{part:05d}.parquet"), seen.keys())
        scores, ids = scan.result()
        approx = recall.partial_topk(index, queries.value, task.k, list(task.nprobes), task.ef_search,
                                     (scores, ids))
        yield pa.RecordBatch.from_pydict({
            "shard": [name], "sha256": [digest], "ntotal": [seen.count], "bytes": [store.size(uri)],
            "min_id": [seen.low], "max_id": [seen.high], "scores": [scores.tobytes()], "ids": [ids.tobytes()],
            "approx_scores": [np.stack([a[0] for a in approx]).tobytes()],
            "approx_ids": [np.stack([a[1] for a in approx]).tobytes()], "left_out": [seen.left_out.tolist()]})
    return write_shard


def _shard_schema():
    """SHARD_SCHEMA as an Arrow schema (a row of nulls would not tell its types)."""
    import pyarrow as pa

    kinds = {"string": pa.string(), "long": pa.int64(), "binary": pa.binary(), "array<long>": pa.list_(pa.int64())}
    return pa.schema([(name, kinds[kind]) for name, kind in (part.split(" ", 1) for part in SHARD_SCHEMA.split(", "))])


class _Ids:
    """Blocks (faiss ids [n], vectors [n, dim]) of Arrow record batches' usable rows (index.vectors.check),
    at least SHARD_BLOCK_ROWS rows read for each (the last may hold fewer; a block of no usable row is not
    given), counting the rows kept and left out and keeping the id range."""

    def __init__(self, dim: int = 0, metric: str = "ip", keep: bool = False) -> None:
        self.count, self.low, self.high = 0, MAX_INT64, -1
        self.dim, self.metric = dim, metric
        self.left_out = np.zeros(len(vectors.STATUSES), np.int64)
        self.kept = [] if keep else None  # Arrow tables of the usable rows' ID_COLUMNS, with `keep`

    def keys(self) -> bytes:
        """The usable rows' ID_COLUMNS as Parquet bytes (ids.parquet's format)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        out = pa.BufferOutputStream()
        pq.write_table(pa.concat_tables(self.kept), out)
        return out.getvalue().to_pybytes()

    def blocks(self, batches: Iterator[Any]) -> Iterator[shards.Block]:
        pending, rows = [], 0
        for batch in batches:
            pending, rows = pending + [batch], rows + batch.num_rows
            if rows >= SHARD_BLOCK_ROWS:
                yield from self._block(pending)
                pending, rows = [], 0
        if rows:
            yield from self._block(pending)

    def _block(self, batches: list) -> Iterator[shards.Block]:
        import pyarrow as pa

        table = pa.Table.from_batches(batches)
        ids, column = table.column("faiss_id").to_numpy().astype(np.int64, copy=False), table.column("embedding")
        codes = vectors.check(column, self.dim, self.metric)
        if codes.any():
            self.left_out += vectors.left_out(codes)
            usable = codes == vectors.OK
            ids, column, table = ids[usable], column.filter(pa.array(usable)), table.filter(pa.array(usable))
        if self.kept is not None:
            self.kept.append(table.select(list(ID_COLUMNS)))
        if len(ids):
            self.count += len(ids)
            self.low, self.high = min(self.low, int(ids.min())), max(self.high, int(ids.max()))
            yield ids, vectors.matrix(column)


def exact_scan(spark, rows, queries: np.ndarray, k: int, metric: str) -> list[dict]:
    """Exact top-k of `queries` over every row, one result per partition (shard_writer's format)."""
    shipped = spark.sparkContext.broadcast(queries)

    def scan(frames: Frames) -> Frames:
        from udfs import cache

        cache.set_faiss_threads()
        found = shards.ExactTopK(shipped.value, k, metric)
        for frame in rebatch(frames, SHARD_BLOCK_ROWS):
            found.add(frame["faiss_id"].to_numpy(np.int64), vectors_of(frame))
        if found.best is not None:
            scores, ids = found.result()
            yield pd.DataFrame({"scores": [scores.tobytes()], "ids": [ids.tobytes()]})
    result = rows.select("faiss_id", "embedding").mapInPandas(scan, "scores binary, ids binary").collect()
    shipped.unpersist()
    return [r.asDict() for r in result]


def exact_from_shards(rows: list, n_queries: int, k: int, metric: str) -> tuple[np.ndarray, np.ndarray]:
    parts = [(np.frombuffer(r["scores"], np.float32).reshape(n_queries, k),
              np.frombuffer(r["ids"], np.int64).reshape(n_queries, k)) for r in rows]
    return shards.merge_topk(parts, k, metric)


def index_version(folder: str) -> str:
    """A digest of every file an index's manifest vouches for (driver side)."""
    digests = manifest.expected_sha256(manifest.read(folder))
    return hashlib.sha256(json.dumps(digests, sort_keys=True).encode()).hexdigest()


def searcher_fn(folder: str, k: int, exclude_self: bool, params: tuple[int, int],
                batch_size: int, rerank: Rerank = Rerank()) -> Callable[[Frames], Frames]:
    """A mapInPandas function: blocks of (id, embedding) → neighbours rows, k per query.

    Warm workers keep the loaded index across tasks; the key's version is the digest of the files
    the manifest lists, so an index rebuilt at the same path is reloaded."""
    version = index_version(folder)

    def search_partition(frames: Frames) -> Frames:
        from udfs import cache

        cache.set_faiss_threads()
        loaded = cache.get_latest(("index", folder, params), version, lambda: searcher.load(folder, *params))
        for block in rebatch(frames, batch_size):
            yield neighbours_frame(loaded, block, k, exclude_self, rerank)
    return search_partition


def neighbours_frame(loaded: searcher.LoadedIndex, frame: pd.DataFrame, k: int, exclude_self: bool,
                     rerank: Rerank = Rerank()) -> pd.DataFrame:
    """Rows of the neighbours table (contracts.NEIGHBOURS) for a block of queries (id, embedding[, status,
    error]): k rows per `ok` query (fewer only when the index holds fewer), ranks from 1, status ok; one
    row with null rank, neighbor_id and score for a query that is not ok (its status and error are kept)
    or that finds no neighbour (status no_neighbours). With `rerank`, the first max(k, rerank.top) results are
    re-ordered (udfs.reranking) and the scores are the re-ranking's."""
    good = (frame["status"] == "ok").to_numpy() if "status" in frame else np.ones(len(frame), bool)
    found: dict[int, list] = {}
    if good.any():
        scores, names = reranked_search(loaded, vectors_of(frame[good]), k + 1 if exclude_self else k, rerank)
        for row, query, row_scores, row_names in zip(np.flatnonzero(good), frame["id"].to_numpy()[good],
                                                     scores, names):
            found[row] = [(n, float(s)) for n, s in zip(row_names, row_scores) if n is not None and
                          not (exclude_self and n == query)][:k]
    rows = []
    for row, query in enumerate(frame["id"].tolist()):
        kept = found.get(row, [])
        rows.extend((query, rank, name, score, "ok", None) for rank, (name, score) in enumerate(kept, 1))
        if not kept:
            rows.append((query, None, None, None, *_without_neighbours(frame, row, good[row], exclude_self)))
    out = pd.DataFrame(rows, columns=["query_id", "rank", "neighbor_id", "score", "status", "error"])
    return out.astype({"rank": "Int32", "score": "float32"})


def reranked_search(loaded: searcher.LoadedIndex, queries: np.ndarray, k: int,
                    rerank: Rerank) -> tuple[np.ndarray, np.ndarray]:
    """(scores [n, k], string ids [n, k]; None = none) of the queries: the index's top k, or its top
    max(k, rerank.top) re-ordered by `rerank` (candidate vectors from the index) and cut to k."""
    if rerank.method == "none":
        return searcher.search(loaded, queries, k)
    scores, ids = searcher.search_ids(loaded, queries, max(k, rerank.top))
    scores, ids = reranking.rerank(rerank, queries, ids, searcher.vectors_by_id(loaded, ids), scores)
    return scores[:, :k], searcher.names_of(loaded, ids[:, :k])


def _without_neighbours(frame: pd.DataFrame, row: int, searched: bool, exclude_self: bool) -> tuple:
    """(status, error) of a query that has no neighbour rows: not searched (its own), or nothing found."""
    if searched:
        return NO_NEIGHBOURS, "the index returned no neighbour" + (" other than the query itself" if exclude_self else "")
    return frame["status"].iat[row], frame["error"].iat[row] if "error" in frame else None


def spread(df, partitions: int = 0):
    """`df` dealt round-robin over `partitions`, or (0) at least one partition per core: files are
    read as skewed partitions (one row group can hold every query), which would leave cores idle."""
    cores = df.sparkSession.sparkContext.defaultParallelism
    return df.repartition(partitions or max(cores, df.rdd.getNumPartitions()))

