"""The corpus behind the app: items, their sources and gold labels, and the batch jobs' result tables, by id."""
from __future__ import annotations

import functools
import json
import threading
from collections import Counter
from dataclasses import dataclass

import numpy as np

from index import store
from jobs.app.parquet import ParquetTable
from jobs.core.config import ConfigError
from udfs.files import read_file
from udfs.report_thumbs import MAX_BYTES, is_image_source, thumbnail_bytes


@dataclass(frozen=True)
class CorpusFiles:
    """The tables the batch jobs wrote (Parquet paths; empty = not given) and the gold labels."""

    embeddings: str = ""
    neighbours: str = ""
    duplicates: str = ""
    uniqueness: str = ""
    gold: str = ""
    label_column: str = "label"


class NotFound(LookupError):
    """An id that is not in the tables (the app answers 404): paths are never taken from a request."""


class Corpus:
    def __init__(self, files: CorpusFiles, index_ids: np.ndarray):
        self.index_ids = index_ids  # the index's string ids, already held by the loaded index
        self.embeddings = _table(files.embeddings, "embeddings", ("id", "source", "status"))
        self.neighbours = _table(files.neighbours, "neighbours", ("query_id", "rank", "neighbor_id", "score"))
        self.duplicates = _table(files.duplicates, "duplicates", ("group_id", "id", "score_to_representative"))
        self.uniqueness = _table(files.uniqueness, "uniqueness", ("id", "nearest_id", "nearest_score", "rank"))
        self.gold = read_gold(files.gold, files.label_column) if files.gold else {}
        self.class_sizes = Counter(self.gold.values())
        self._groups: list[tuple[str, int]] | None = None
        self._lock = threading.Lock()

    @property
    def total(self) -> int:
        return self.embeddings.total if self.embeddings else len(self.index_ids)

    def page(self, offset: int, limit: int) -> list[dict]:
        """Items [offset, offset + limit): the embeddings table's rows (bad rows too), else the index's ids."""
        if self.embeddings is None:
            return [self._item(str(i), "ok", None) for i in self.index_ids[offset:offset + limit]]
        rows = self.embeddings.page(offset, limit, ["id", "status", *self._error]).to_pylist()
        return [self._item(r["id"], r["status"], r.get("error")) for r in rows]

    @property
    def _error(self) -> list[str]:
        return ["error"] if "error" in self.embeddings.columns else []

    def _item(self, item_id: str, status: str, error: str | None) -> dict:
        return {"id": item_id, "status": status, "error": error, "label": self.gold.get(item_id)}

    def hits(self, query_id: str | None, ids: list[str]) -> list[bool | None]:
        """Whether each id has the query's gold label; None where either is unlabelled."""
        label = self.gold.get(query_id) if query_id is not None else None
        return [None if label is None or i not in self.gold else self.gold[i] == label for i in ids]

    @functools.lru_cache(maxsize=4096)
    def source_of(self, item_id: str) -> str:
        """The embeddings table's `source` of an id; NotFound when the id is not in the table."""
        if self.embeddings is None:
            raise NotFound("no embeddings table was given (--embeddings): there are no sources to show")
        rows = self.embeddings.rows("id", [item_id], ["id", "source"]).to_pylist()
        if not rows:
            raise NotFound(f"no item {item_id!r} in the embeddings table")
        return rows[0]["source"] or ""

    @functools.lru_cache(maxsize=2048)
    def thumbnail(self, item_id: str, size: int) -> tuple[bytes, str]:
        """(encoded thumbnail, MIME type) of the image file the table names for `item_id`; NotFound for
        an unknown id or a source that is not an image; RowError when the file cannot be read."""
        source = self.source_of(item_id)
        if not is_image_source(source):
            raise NotFound(f"item {item_id!r} is not an image file ({source!r})")
        return thumbnail_bytes(read_file(source, MAX_BYTES), size)

    def stored_neighbours(self, item_id: str) -> list[dict] | None:
        """The neighbours table's rows for `item_id`, by rank; None when no table was given."""
        if self.neighbours is None:
            return None
        table = self.neighbours.rows("query_id", [item_id], ["rank", "neighbor_id", "score"])
        rows = sorted(table.to_pylist(), key=lambda r: r["rank"])
        return [{"rank": r["rank"], "id": r["neighbor_id"], "score": r["score"]} for r in rows]

    def duplicate_groups(self, offset: int, limit: int) -> tuple[int, list[dict]]:
        """(how many groups, the groups [offset, offset + limit) largest first, each with its members)."""
        if self.duplicates is None:
            return 0, []
        with self._lock:
            if self._groups is None:
                self._groups = _group_sizes(self.duplicates)
        chosen = self._groups[offset:offset + limit]
        members = self.duplicates.rows("group_id", [g for g, _ in chosen],
                                       ["group_id", "id", "score_to_representative"]).to_pylist()
        out = []
        for group_id, size in chosen:
            rows = sorted((m for m in members if m["group_id"] == group_id),
                          key=lambda m: (-(m["score_to_representative"] or 0), m["id"]))
            out.append({"group_id": group_id, "size": size,
                        "members": [{"id": m["id"], "score": m["score_to_representative"]} for m in rows]})
        return len(self._groups), out

    def most_unique(self, limit: int) -> list[dict]:
        """The uniqueness table's first `limit` ranks (rank 1 = the item farthest from any other)."""
        import pyarrow.compute as pc

        if self.uniqueness is None:
            return []
        batches = self.uniqueness.scan(["id", "nearest_id", "nearest_score", "rank"], pc.field("rank") <= limit)
        rows = [row for batch in batches for row in batch.to_pylist()]
        return sorted(rows, key=lambda r: r["rank"])[:limit]


def _table(location: str, key: str, columns: tuple[str, ...]) -> ParquetTable | None:
    if not location:
        return None
    table = ParquetTable(location, key)
    table.require(*columns)
    return table


def _group_sizes(table: ParquetTable) -> list[tuple[str, int]]:
    """[(group_id, members)] largest first; one streamed pass over the group_id column."""
    import pyarrow.compute as pc

    sizes: dict[str, int] = {}
    for batch in table.scan(["group_id"]):
        for entry in pc.value_counts(batch.column(0)).to_pylist():
            sizes[entry["values"]] = sizes.get(entry["values"], 0) + entry["counts"]
    return sorted(sizes.items(), key=lambda item: (-item[1], str(item[0])))


def read_gold(location: str, label_column: str) -> dict[str, str]:
    """{id: label} from a JSON file ({id: label} or [{id: label}, ...], as evaluate reads it), a CSV
    file, or a Parquet table with `id` and `label_column`. Held in memory: one short string per item."""
    if location.endswith(".json"):
        try:
            data = json.loads(store.read_bytes(location).decode("utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"key 'gold': cannot read {location!r}: {exc}") from None
        pairs = data.items() if isinstance(data, dict) else \
            [item for entry in data if isinstance(entry, dict) for item in entry.items()] \
            if isinstance(data, list) else None
        if pairs is None:
            raise ConfigError(f"key 'gold': {location!r} must hold {{id: label}} or [{{id: label}}]")
        return {str(k): str(v) for k, v in pairs}
    if location.endswith(".csv"):
        import io

        from pyarrow import csv

        table = csv.read_csv(io.BytesIO(store.read_bytes(location)))
        names = table.column_names
    else:
        dataset = ParquetTable(location, "gold").dataset
        names = dataset.schema.names
    missing = [c for c in ("id", label_column) if c not in names]
    if missing:
        raise ConfigError(f"key 'gold': {location!r} has no column {', '.join(missing)}; its columns are "
                          f"{', '.join(names)} (set label_column)")
    if not location.endswith(".csv"):
        table = dataset.to_table(columns=["id", label_column])
    return {str(i): str(v) for i, v in zip(table.column("id").to_pylist(), table.column(label_column).to_pylist())
            if i is not None and v is not None}
