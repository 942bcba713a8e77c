"""Maps of the corpus: a seeded sample projected to 2-D once at start-up; queries placed on it as stars."""
from __future__ import annotations

import numpy as np

from jobs.app.engine import IndexView
from jobs.app.parquet import ParquetTable
from udfs import report_plots


class Atlas:
    """One map: sample ids, their [n, 2] coordinates in [0, 1], and the fitted projection (PCA, or UMAP
    where `umap-learn` is installed: report_plots.fit_projection) that places new vectors the same way."""

    def __init__(self, ids: list[str], vectors: np.ndarray, gold: dict[str, str], seed: int, source: str):
        self.ids, self.source = ids, source
        self.projection, self.coords = report_plots.fit_projection(vectors, seed)
        labels = [gold.get(i) for i in ids]
        self.labels, self.colours = labels, report_plots.palette(labels)

    def payload(self) -> dict:
        """{method, source, colours {label: css}, points [{id, x, y, label}]} for the page's SVG."""
        return {"method": self.projection.method, "source": self.source, "colours": self.colours,
                "points": [{"id": i, "x": round(float(x), 4), "y": round(float(y), 4), "label": lb}
                           for i, (x, y), lb in zip(self.ids, self.coords, self.labels)]}

    def place(self, vector: np.ndarray) -> dict:
        """{x, y} of one [1, dim] query in the map's frame (outside [0, 1] when beyond the sample)."""
        x, y = self.projection.transform(vector)[0]
        return {"x": round(float(x), 4), "y": round(float(y), 4)}


def from_index(view: IndexView, n: int, seed: int, gold: dict[str, str]) -> Atlas:
    """A map of `n` of the index's items drawn with `seed`, their vectors given back by the index."""
    names = view.loaded.names
    chosen = np.sort(np.random.default_rng(seed).permutation(len(names))[:n])
    ids = [str(names[i]) for i in chosen]
    vectors, _ = view.vectors_of(ids)
    return Atlas(ids, vectors, gold, seed, f"{len(ids)} of the index's {len(names)} items")


def from_table(table: ParquetTable, n: int, seed: int, gold: dict[str, str]) -> Atlas:
    """A map of about `n` ok rows of an embeddings table (ParquetTable.sample: a few row groups)."""
    import pyarrow.compute as pc

    sample = table.sample(n, seed, ["id", "embedding"], pc.field("status") == "ok")
    ids = [str(i) for i in sample.column("id").to_pylist()]
    vectors = np.array(sample.column("embedding").to_pylist(), dtype=np.float32).reshape(len(ids), -1)
    return Atlas(ids, vectors, gold, seed, f"{len(ids)} of the table's {table.total} rows")
