"""Seeded samples of an embeddings table's usable rows: for each seed, the rows of smallest hash key (a bottom-k
sample), taken in the read pass (contracts.check_embeddings) or in a pass of their own."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from index import vectors
from jobs.tables.ids import MAX_HASH

ALL = MAX_HASH + 1  # a threshold above every key: the whole table is read into the sample


@dataclass(frozen=True)
class Sampling:
    """What to sample: counts[i] rows (0: none) of key seeds[i]; a row whose vector index.vectors.check
    refuses for `metric` is never sampled. `total` (> 0) bounds the rows the pass reads: it sizes the share
    of them kept (a Bernoulli pre-selection on the key: about counts[i] + 6 sd rows of `total`)."""

    counts: tuple[int, ...]
    seeds: tuple[int, ...]
    metric: str
    total: int

    def thresholds(self) -> list[int]:
        """Per sample, the key below which a row is kept (ALL: every row)."""
        return [threshold(count, self.total) for count in self.counts]


@dataclass(frozen=True)
class Samples:
    """Samples taken as `sampling` says: per sample, (faiss ids [n], float32 vectors [n, dim]) in key order,
    and whether it is the table's whole bottom-k (`complete`: as many rows as asked, or every row kept)."""

    sampling: Sampling
    taken: tuple[tuple[np.ndarray, np.ndarray], ...]
    complete: tuple[bool, ...]

    def take(self, counts: tuple[int, ...], seeds: tuple[int, ...], metric: str) -> list[np.ndarray] | None:
        """The samples of `counts` rows with `seeds` and `metric` (ordered by faiss id, as `samples` gives
        them), cut from these; None when these cannot give them exactly (another seed or metric, fewer rows
        asked, or a sample that may miss rows of smaller key)."""
        ours = self.sampling
        if (ours.seeds, ours.metric) != (seeds, metric) or any(
                count and (count > have or not whole) for count, have, whole in zip(counts, ours.counts, self.complete)):
            return None
        return [_by_id(ids[:count], found[:count]) for count, (ids, found) in zip(counts, self.taken)]


def threshold(count: int, total: int) -> int:
    """The key (0 .. MAX_HASH) below which about count + 6 sqrt(count) + 20 of `total` rows fall (fewer than
    `count` has odds of about 1e-9); ALL when that is every row, 0 when `count` is 0."""
    if not count:
        return 0
    fraction = (count + 6 * np.sqrt(count) + 20) / max(total, 1)
    return ALL if fraction >= 1 else int(fraction * ALL)


def key(faiss_id: Any, seed: int) -> Any:
    """The Column of a row's sampling key for `seed`: xxhash64 of its faiss id and the seed, 63 bits; it
    depends only on the id and the seed, so a sample is the same under any partitioning or file layout."""
    from pyspark.sql import functions as F

    return F.xxhash64(faiss_id, F.lit(seed)).bitwiseAND(F.lit(MAX_HASH))


def kept(keys: list[Any], limits: list[int]) -> Any:
    """A boolean Column: whether some sample keeps the row (`keys[i]` below `limits[i]`)."""
    from pyspark.sql import functions as F

    picked = [F.lit(True) if limit == ALL else k < F.lit(limit) for k, limit in zip(keys, limits) if limit]
    return picked[0] if len(picked) == 1 else F.greatest(*picked) if picked else F.lit(False)


def cut(table: Any, sampling: Sampling) -> Samples:
    """The Samples of an Arrow table of kept rows (faiss_id, embedding, key_0, key_1, ...): per sample, its
    usable rows (index.vectors.check) of key below its threshold, the counts[i] of smallest key."""
    ids, column = table.column("faiss_id").to_numpy(), table.column("embedding")
    usable = vectors.check(column, 0, sampling.metric) == vectors.OK if len(ids) else np.zeros(0, bool)
    taken, complete = [], []
    for i, (count, limit) in enumerate(zip(sampling.counts, sampling.thresholds())):
        keys = table.column(f"key_{i}").to_numpy()
        chosen = np.flatnonzero(usable & (keys < limit))
        chosen = chosen[np.lexsort((ids[chosen], keys[chosen]))][:count]  # equal keys: by id, for any row order
        taken.append((ids[chosen], vectors.matrix(column.take(chosen))))
        complete.append(len(chosen) == count or limit == ALL)
    return Samples(sampling, tuple(taken), tuple(complete))


def split(groups, sampling: Sampling, ok: str) -> tuple[list[dict], Samples | None]:
    """(the rows of an aggregation by status (one column `_sampled`: the list of the rows some sample keeps) as
    dicts without `_sampled`, the Samples of the `ok` group's list; None without an ok group). The lists are
    exploded in Spark, so they reach the driver as Arrow blocks of ordinary rows: one aggregated row holding
    ~100k vectors, made one Arrow batch by Spark, overflowed a 1 GiB JVM heap."""
    import pyarrow.compute as pc
    from pyspark.sql import functions as F

    stats = [c for c in groups.columns if c != "_sampled"]
    fields = groups.schema["_sampled"].dataType.elementType.fieldNames()
    # the struct's fields taken out one by one: a status group with an empty list explodes to a null row, and a
    # null struct of non-nullable fields cannot become Arrow (ArrowInvalid); its fields, taken out, are nullable
    row = F.explode_outer("_sampled").alias("_row")
    table = groups.select(*stats, row).select(*stats, *(F.col("_row")[f].alias(f"_row_{f}") for f in fields)).toArrow()
    firsts: dict = {}
    for i, status in enumerate(table.column("status").to_pylist()):
        firsts.setdefault(status, i)
    rows = [table.select(stats).slice(i, 1).to_pylist()[0] for i in firsts.values()]
    if ok not in firsts:
        return rows, None
    kept = table.filter(pc.equal(table.column("status"), ok)).select([f"_row_{f}" for f in fields]).rename_columns(fields)
    return rows, cut(kept.filter(pc.is_valid(kept.column("faiss_id"))), sampling)


def samples(rows, counts: tuple[int, ...], total: int, seeds: tuple[int, ...], metric: str) -> list[np.ndarray]:
    """Seeded samples [counts[i], dim] float32 of `rows` (faiss_id, embedding; `total` of them), taken in one
    pass of their own: the usable rows (index.vectors.check with `metric`) of smallest key(seeds[i]),
    ordered by faiss id: the same rows as the read pass's samples (check_embeddings with a Sampling). A sample
    holds fewer when fewer usable rows fall below its threshold. The rows reach the driver as Arrow
    (DataFrame.toArrow), read into numpy without a per-row object."""
    sampling = Sampling(counts, seeds, metric, total)
    keys = [key("faiss_id", seed).alias(f"key_{i}") for i, seed in enumerate(seeds)]
    frame = rows.select("faiss_id", "embedding", *keys)
    table = frame.filter(kept([frame[f"key_{i}"] for i in range(len(seeds))], sampling.thresholds())).toArrow()
    found = cut(table, sampling)
    return [_by_id(ids, chosen) for ids, chosen in found.taken]


def sample_vectors(rows, count: int, total: int, seed: int, metric: str) -> np.ndarray:
    """A seeded sample of about `count` vectors [count, dim] of `rows` (faiss_id, embedding; `total` of
    them), ordered by id so it is reproducible (`samples` of one)."""
    return samples(rows, (count,), total, (seed,), metric)[0]


def _by_id(ids: np.ndarray, found: np.ndarray) -> np.ndarray:
    return found[np.argsort(ids, kind="stable")]
