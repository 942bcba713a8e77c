"""Query blocks of a sharded search: the query rows written once as Parquet, one folder per block, and read
back whole by each task that searches the block, so no query vector crosses a shuffle more than once
(spark-rapids-ml broadcasts its queries instead; a broadcast must fit in every executor)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from index import store
from jobs.indexing import partitions

DONE = "_queries.done"  # written last: a re-run with the same location may reuse the blocks


def block_column(blocks: int):
    """A query's block: pmod(xxhash64(id), blocks), an int in [0, blocks); any partitioning agrees."""
    from pyspark.sql import functions as F

    return F.pmod(F.xxhash64("id"), F.lit(blocks)).cast("int").alias("block")


def write(rows, blocks: int, location: str) -> None:
    """Writes (id, self_id, embedding) of every row of `rows` (id, embedding) under `location/block=<b>/`
    (Spark's partitionBy), self_id = partitions.faiss_id_column: one shuffle of the vectors (by block,
    so a block is a few files), then DONE. Eager. Raises what Spark's write raises."""
    self_id = partitions.faiss_id_column().alias("self_id")
    (rows.select("id", self_id, block_column(blocks), "embedding").repartition(blocks, "block")
     .write.mode("overwrite").partitionBy("block").parquet(location))
    store.write_bytes(store.join(location, DONE), b"done")


def written(location: str) -> bool:
    """Whether `write` finished at `location` (its DONE marker exists)."""
    return store.exists(store.join(location, DONE))


def read(location: str, block: int) -> tuple[pd.DataFrame, np.ndarray]:
    """(DataFrame(id, self_id) [q], float32 vectors [q, dim]) of one block written by `write`, read with
    pyarrow on the worker (any filesystem store.resolve knows); q = 0 when no query hashed to the block."""
    import pyarrow.parquet as pq

    uri = store.join(location, f"block={block}")
    if not store.exists(uri):
        return pd.DataFrame({"id": pd.Series([], dtype=object), "self_id": np.zeros(0, np.int64)}), np.zeros((0, 0), np.float32)
    fs, path = store.resolve(uri)
    table = pq.read_table(path, filesystem=fs, columns=["id", "self_id", "embedding"])
    vectors = table.column("embedding").combine_chunks().flatten().to_numpy(zero_copy_only=False)
    vectors = vectors.astype(np.float32, copy=False).reshape(table.num_rows, -1) if table.num_rows else vectors.reshape(0, 0)
    return table.select(["id", "self_id"]).to_pandas(), vectors
