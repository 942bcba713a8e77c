"""Two indexes of one corpus side by side (two models, or two layers): neighbours and the prototype's
rank-weighted precision@k per query and over a seeded sample of queries."""
from __future__ import annotations

import threading

import numpy as np

from jobs.app.corpus import Corpus
from jobs.app.engine import IndexView
from udfs.similarity import query_metrics


class Comparison:
    """Each index is searched with the item's own vector in that index (its own embedding space)."""

    def __init__(self, views: list[IndexView], corpus: Corpus):
        self.views, self.corpus = views, corpus
        self._overall: dict[tuple[int, int, int], dict] = {}
        self._lock = threading.Lock()

    def names(self) -> list[str]:
        return [f"{view.model} ({view.folder})" for view in self.views]

    def query(self, item_id: str, k: int) -> list[dict]:
        """Per index: {index, neighbours [{rank, id, score, hit}], metrics} for one item (NotFound-free:
        an index that does not hold the item says so in `error`)."""
        out = []
        for name, view in zip(self.names(), self.views):
            vectors, found = view.vectors_of([item_id])
            if not found[0]:
                out.append({"index": name, "neighbours": [], "metrics": None,
                            "error": f"{item_id!r} is not in this index"})
                continue
            neighbours = view.search(vectors, k, [item_id])[0]
            flags = self.corpus.hits(item_id, [n["id"] for n in neighbours])
            for n, flag in zip(neighbours, flags):
                n["hit"] = flag
            out.append({"index": name, "neighbours": neighbours, "metrics": self._metrics(item_id, flags, k)})
        return out

    def overall(self, queries: int, k: int, seed: int) -> dict:
        """Mean metrics@k of each index over `queries` gold-labelled items drawn with `seed` (cached)."""
        with self._lock:
            if (queries, k, seed) not in self._overall:
                self._overall[(queries, k, seed)] = self._measure(queries, k, seed)
            return self._overall[(queries, k, seed)]

    def _measure(self, queries: int, k: int, seed: int) -> dict:
        if not self.corpus.gold:
            return {"queries": 0, "k": k, "indexes": [], "error": "no gold labels (--gold): hits are unknown"}
        labelled = sorted(self.corpus.gold)
        indexed = np.array(labelled, dtype=object)[self.views[0].faiss_ids(labelled) >= 0]  # gold may hold more
        ids = list(indexed[np.random.default_rng(seed).permutation(len(indexed))[:queries]])
        rows = []
        for name, view in zip(self.names(), self.views):
            vectors, found = view.vectors_of(ids)
            held = [i for i, ok in zip(ids, found) if ok]
            results = view.search(vectors[found], k, held) if held else []
            per_query = [self._metrics(i, self.corpus.hits(i, [n["id"] for n in r]), k)
                         for i, r in zip(held, results)]
            mean = {m: float(np.mean([q[m] for q in per_query])) for m in per_query[0]} if per_query else {}
            rows.append({"index": name, "queries": len(held), "metrics": mean})
        return {"queries": len(ids), "k": k, "seed": seed, "indexes": rows}

    def _metrics(self, item_id: str, flags: list[bool | None], k: int) -> dict | None:
        """query_metrics (precision, rank-weighted precision, AP, recall @k); None without a gold label."""
        label = self.corpus.gold.get(item_id)
        if label is None:
            return None
        return query_metrics(np.array([bool(f) for f in flags]), self.corpus.class_sizes[label] - 1, k)
