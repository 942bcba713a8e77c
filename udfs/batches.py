"""Re-blocking a stream of pandas frames: the block size a partition function works in, whatever Spark hands it."""
from __future__ import annotations

from typing import Iterator

import pandas as pd


def rebatch(frames: Iterator[pd.DataFrame], rows: int) -> Iterator[pd.DataFrame]:
    """The rows of `frames`, in order, as blocks of exactly `rows` rows (the last may hold fewer),
    each with a fresh 0..n-1 index; empty frames are skipped.

    Spark hands a partition function Arrow blocks of the session's `maxRecordsPerBatch` rows; a
    library function must not change that session-wide setting, so it sizes its own blocks here
    (large enough for a fast faiss search, small enough to length-sort texts). Holds at most `rows`
    rows plus one incoming frame. Raises ValueError when `rows` < 1.
    """
    if rows < 1:
        raise ValueError(f"rows must be >= 1, got {rows}")
    pending: list[pd.DataFrame] = []
    count = 0
    for frame in frames:
        start = 0
        while start < len(frame):
            take = min(rows - count, len(frame) - start)
            pending.append(frame.iloc[start:start + take])
            count, start = count + take, start + take
            if count == rows:
                yield _joined(pending)
                pending, count = [], 0
    if count:
        yield _joined(pending)


def _joined(parts: list[pd.DataFrame]) -> pd.DataFrame:
    return (pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0].reset_index(drop=True))
