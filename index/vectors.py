"""Which vectors an index can hold: the per-row checks (missing, wrong length, NaN / infinite, all zero) on
Arrow blocks, in numpy, for the code that already holds the vectors (a shard writer, a sample)."""
from __future__ import annotations

from typing import Any

import numpy as np

# why a row's vector cannot be indexed or searched, in the order the first that applies is chosen
STATUSES = ("missing_vector", "wrong_dim", "non_finite", "zero_vector")
OK = 0  # check's code of a usable vector; status i has code i + 1


def check(column: Any, dim: int, metric: str) -> np.ndarray:
    """int8 codes [n] of an Arrow list column (Array or ChunkedArray) of n vectors: OK (0), or 1 + the index
    in STATUSES of the first that applies, as jobs.tables.vectors.vector_check decides it in Spark:
    missing_vector (a null list), wrong_dim (not `dim` values; `dim` 0: not checked), non_finite (a NaN, an
    infinity or a null value), zero_vector (at least one value, all of them 0 or -0; metric `ip` only: no
    direction). Values are checked as stored (float or double), before any cast to float32."""
    import pyarrow.compute as pc

    if hasattr(column, "combine_chunks"):
        column = column.combine_chunks()
    n = len(column)
    missing = column.is_null().to_numpy(zero_copy_only=False)
    lengths = pc.list_value_length(column).fill_null(0).to_numpy(zero_copy_only=False)
    values = column.flatten().to_numpy(zero_copy_only=False)  # the non-null lists' values; a null value is NaN
    if n and not missing.any() and lengths.min() == lengths.max():  # the usual block: a [n, dim] matrix
        matrix = values.reshape(n, -1)
        non_finite, nonzero = ~np.isfinite(matrix).all(axis=1), (matrix != 0).any(axis=1)
    else:
        row = np.repeat(np.arange(n, dtype=np.int32), lengths)  # the row of each value
        non_finite, nonzero = np.zeros(n, bool), np.zeros(n, bool)
        non_finite[row[~np.isfinite(values)]] = True
        nonzero[row[values != 0]] = True
    codes = np.zeros(n, np.int8)
    for code, bad in ((4, (lengths > 0) & ~nonzero & (metric == "ip")), (3, non_finite),
                      (2, (lengths != dim) & (dim > 0)), (1, missing)):  # the first status wins: set it last
        codes[bad] = code
    return codes


def left_out(codes: np.ndarray) -> np.ndarray:
    """int64 [len(STATUSES)]: how many of `codes` (check's) have each status."""
    return np.bincount(codes, minlength=len(STATUSES) + 1)[1:].astype(np.int64)


def matrix(column: Any) -> np.ndarray:
    """float32 [n, dim] of an Arrow list column (Array or ChunkedArray) of n equal-length vectors ([0, 0]
    when n is 0): one copy of the values, no per-row object (a pandas column makes n arrays)."""
    if hasattr(column, "combine_chunks"):
        column = column.combine_chunks()
    flat = column.flatten().to_numpy(zero_copy_only=False)
    return np.ascontiguousarray(flat, dtype=np.float32).reshape(len(column), -1 if len(column) else 0)
