"""The shard writer: the partition function (mapInArrow) that adds one partition's rows to a copy of the trained
index and writes the shard, with what the build learns in the same pass (the recall queries' exact and
approximate top-k, the rows left out, its part of ids.parquet)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np

from index import manifest, recall, shards, store, vectors
from jobs.indexing.partitions import SHARD_BLOCK_ROWS

SHARD_SCHEMA = ("shard string, sha256 string, ntotal long, bytes long, min_id long, max_id long, partials string, "
                "left_out array<long>")
PARTIALS = "partials"  # the work folder's folder of the shards' recall partials (index.recall.Partials files)
MAX_INT64 = 0x7FFFFFFFFFFFFFFF
ID_COLUMNS = ("faiss_id", "id", "content_hash")  # of index.manifest.IDS: faiss ids → the table's rows


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


def shard_writer(trained: Any, queries: Any, task: ShardTask) -> Callable[[Iterator[Any]], Iterator[Any]]:
    """A mapInArrow function: one partition of (faiss_id, embedding) Arrow record batches, in any order (read
    into numpy blocks of at least SHARD_BLOCK_ROWS without pandas; a row whose vector fails
    index.vectors.check is left out and counted, so no pass over the table is made only to check them) →
    one shard file, the exact top-k of the recall queries over it (so ground truth costs no extra pass over
    the data) and the shard's own
    approximate top-k at each of `task.nprobes` (index.recall.partial_topk: recall is measured without
    loading the whole index anywhere), written as `partials/part-<partition>.npz` (index.recall.Partials).

    The shard is `index.shards.fill` of a copy of the trained empty index, written as
    `shards/shard-<partition>.faiss` with a `.sha256` done-marker written last; with `resume`, a shard
    whose marker exists is reused (read back, scanned). `trained` (bytes) and `queries` (float32 [q, dim])
    are Spark broadcasts: shipped once per executor. Returns one SHARD_SCHEMA row (`partials`: the name of
    its partials file in the folder; `left_out`: the rows left out by status, in index.vectors.STATUSES
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
        exact = scan.result()
        approx = recall.partial_topk(index, queries.value, task.k, list(task.nprobes), task.ef_search, exact)
        partials = f"{PARTIALS}/part-{part:05d}.npz"  # a file, not a column: the driver folds them one at a time
        store.write_bytes(store.join(task.folder, partials), recall.Partials.to_bytes(exact, approx))
        yield pa.RecordBatch.from_pydict({
            "shard": [name], "sha256": [digest], "ntotal": [seen.count], "bytes": [store.size(uri)],
            "min_id": [seen.low], "max_id": [seen.high], "partials": [partials], "left_out": [seen.left_out.tolist()]})
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
