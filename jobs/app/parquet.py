"""A published Parquet table read a few rows at a time with pyarrow: pages, rows by key, seeded samples."""
from __future__ import annotations

import threading
from typing import Iterator

import numpy as np
import pandas as pd

from index import store
from jobs.core.config import ConfigError


def key_hashes(values: list[str] | np.ndarray) -> np.ndarray:
    """uint64 hashes of string keys (pandas' hash_array: SipHash with a fixed key, so stable)."""
    return pd.util.hash_array(np.asarray(values, dtype=object))


class ParquetTable:
    """The row groups of a Parquet table (a folder of part files, as the jobs publish it), each read on
    its own: nothing here reads the whole table into memory.

    Hidden names (`.`, `_`: staging folders, `_SUCCESS`) are skipped, as Spark skips them.
    """

    def __init__(self, location: str, key: str):
        import pyarrow.dataset as ds

        self.location, self.key = location, key
        filesystem, path = store.resolve(location)
        try:
            self.dataset = ds.dataset(path, format="parquet", filesystem=filesystem)
            self.parts = [part for fragment in self.dataset.get_fragments()
                          for part in fragment.split_by_row_group()]
        except (OSError, ValueError) as exc:  # pyarrow.lib.ArrowInvalid is a ValueError
            raise ConfigError(f"key '{key}': {location!r} is not a readable Parquet table: {exc}") from None
        sizes = np.array([part.row_groups[0].num_rows for part in self.parts], dtype=np.int64)
        self.starts = np.concatenate([[0], np.cumsum(sizes)])
        self._keys: dict[str, KeyIndex] = {}
        self._lock = threading.Lock()

    @property
    def total(self) -> int:
        return int(self.starts[-1])

    @property
    def columns(self) -> list[str]:
        return list(self.dataset.schema.names)

    def require(self, *columns: str) -> None:
        """ConfigError naming the key and the columns when one of `columns` is missing."""
        missing = [c for c in columns if c not in self.columns]
        if missing:
            raise ConfigError(f"key '{self.key}': {self.location!r} has no column {', '.join(missing)}; "
                              f"its columns are {', '.join(self.columns)}")

    def read(self, part: int, columns: list[str], where=None):
        """One row group as a pyarrow Table (optionally filtered by a pyarrow expression)."""
        return self.parts[part].to_table(columns=columns, filter=where)

    def page(self, offset: int, limit: int, columns: list[str]):
        """Rows [offset, offset + limit) in the table's order, reading only the row groups they are in."""
        import pyarrow as pa

        first = int(np.searchsorted(self.starts, offset, side="right")) - 1
        pieces, end = [], min(offset + limit, self.total)
        for part in range(max(first, 0), len(self.parts)):
            if self.starts[part] >= end:
                break
            table = self.read(part, columns)
            low = max(offset - int(self.starts[part]), 0)
            pieces.append(table.slice(low, end - int(self.starts[part]) - low))
        return pa.concat_tables(pieces) if pieces else self.dataset.schema.empty_table().select(columns)

    def rows(self, column: str, keys: list[str], columns: list[str]):
        """The rows whose `column` is one of `keys`, reading only the row groups that hold them."""
        import pyarrow as pa
        import pyarrow.compute as pc

        with self._lock:
            if column not in self._keys:
                self._keys[column] = KeyIndex(self, column)
            index = self._keys[column]
        wanted = pc.field(column).isin(pa.array(keys, pa.string()))
        pieces = [self.read(part, columns, wanted) for part in index.parts_of(keys)]
        return pa.concat_tables(pieces) if pieces else self.dataset.schema.empty_table().select(columns)

    def scan(self, columns: list[str], where=None) -> Iterator:
        """Record batches of `columns` over the whole table, streamed (filtered when `where` is given)."""
        return self.dataset.to_batches(columns=columns, filter=where)

    def sample(self, n: int, seed: int, columns: list[str], where=None):
        """About `n` rows drawn with `seed`: whole row groups in a seeded order until 4n rows are read
        (or the table ends), then n of their rows uniformly; a big table is never read whole."""
        import pyarrow as pa

        rng = np.random.default_rng(seed)
        pieces, count = [], 0
        for part in rng.permutation(len(self.parts)):
            piece = self.read(int(part), columns, where)
            pieces.append(piece)
            count += piece.num_rows
            if count >= 4 * n:
                break
        table = pa.concat_tables(pieces) if pieces else self.dataset.schema.empty_table().select(columns)
        if table.num_rows <= n:
            return table
        return table.take(np.sort(rng.choice(table.num_rows, n, replace=False)))


class KeyIndex:
    """Which row groups hold each key of one column: sorted 64-bit key hashes and row-group numbers
    (12 bytes a distinct key per row group), built by one streamed pass over that column alone."""

    def __init__(self, table: ParquetTable, column: str):
        import pyarrow.compute as pc

        hashes, parts = [], []
        for part in range(len(table.parts)):
            values = pc.fill_null(table.read(part, [column]).column(column), "").to_numpy(zero_copy_only=False)
            unique = np.unique(key_hashes(values))
            hashes.append(unique)
            parts.append(np.full(len(unique), part, dtype=np.int32))
        merged = np.concatenate(hashes) if hashes else np.zeros(0, np.uint64)
        order = np.argsort(merged, kind="stable")
        self.hashes = merged[order]
        self.parts = (np.concatenate(parts) if parts else np.zeros(0, np.int32))[order]

    def parts_of(self, keys: list[str]) -> list[int]:
        """The row groups that may hold `keys` (a hash collision only costs reading one more)."""
        wanted = key_hashes(keys)
        low = np.searchsorted(self.hashes, wanted, side="left")
        high = np.searchsorted(self.hashes, wanted, side="right")
        return sorted({int(p) for a, b in zip(low, high) for p in self.parts[a:b]})
