"""Choosing a FAISS index for a row count, a dimension and a memory budget; building and tuning it."""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

FLAT_MAX_ROWS = 100_000   # below this, exact search is fast enough and needs no training
MIN_POINTS_PER_CENTROID = 39  # faiss' own floor for k-means training
METRICS = ("ip", "l2")


@dataclass(frozen=True)
class Choice:
    factory: str
    reason: str


def parse_size(text: str) -> int:
    """'4G', '512M', '1.5GB', '1000' → bytes."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kmgt]?)i?b?\s*", str(text).lower())
    if not match:
        raise ValueError(f"{text!r} is not a size; write e.g. 512M, 4G, 1.5T")
    return int(float(match.group(1)) * 1024 ** "_kmgt".index(match.group(2) or "_"))


def ivf_lists(n: int) -> int:
    """A power of two near 4·√n, with at least 39 training points per list."""
    target = max(1, min(4 * math.sqrt(n), n / MIN_POINTS_PER_CENTROID))
    return int(2 ** max(0, math.floor(math.log2(target))))


def choose_factory(n: int, dim: int, memory_budget: int) -> Choice:
    """Flat while small, IVF-Flat while the vectors fit the budget, IVF-PQ (OPQ) beyond."""
    flat_bytes = n * (4 * dim + 8)
    if n <= FLAT_MAX_ROWS and flat_bytes <= memory_budget:
        return Choice("IDMap2,Flat", f"{n} rows <= {FLAT_MAX_ROWS}: exact search, no training")
    nlist = ivf_lists(n)
    ivf_bytes = flat_bytes + nlist * dim * 4
    if ivf_bytes <= memory_budget:
        return Choice(f"IVF{nlist},Flat", f"{n} rows x {dim}-d = {ivf_bytes / 2**30:.2f} GiB fits "
                                          f"the {memory_budget / 2**30:.2f} GiB budget; nlist ~ 4 sqrt(n)")
    for m in sorted((m for m in range(1, dim + 1) if dim % m == 0 and m <= 128), reverse=True):
        if n * (m + 8) + nlist * dim * 4 <= memory_budget:
            opq = f"OPQ{m}," if dim // m >= 4 else ""
            return Choice(f"{opq}IVF{nlist},PQ{m}",
                          f"{flat_bytes / 2**30:.2f} GiB of raw vectors exceed the "
                          f"{memory_budget / 2**30:.2f} GiB budget: {m} bytes per vector with PQ{m}")
    raise ValueError(f"{n} vectors cannot fit {memory_budget} bytes even at 1 byte per vector; "
                     "raise memory_budget")


def with_ids(factory: str) -> str:
    """Indexes that cannot take explicit ids (Flat, HNSW, PQ) are wrapped in an IDMap2 (which can
    also give vectors back by id, for query expansion)."""
    return factory if "IVF" in factory or factory.startswith("IDMap") else f"IDMap2,{factory}"


def metric_type(metric: str) -> int:
    import faiss

    return faiss.METRIC_INNER_PRODUCT if metric == "ip" else faiss.METRIC_L2


def build_empty(factory: str, dim: int, metric: str) -> "object":
    import faiss

    return faiss.index_factory(dim, with_ids(factory), metric_type(metric))


def train(index: "object", sample: np.ndarray, seed: int) -> None:
    """Trains in place on `sample` [n, dim] float32 with a fixed k-means seed."""
    ivf = _ivf_or_none(index)
    if ivf is not None:
        ivf.cp.seed = seed
    if not index.is_trained:
        index.train(np.ascontiguousarray(sample, dtype=np.float32))


def _ivf_or_none(index: "object"):
    import faiss

    try:
        return faiss.extract_index_ivf(index)
    except RuntimeError:
        return None


def is_ivf(index: "object") -> bool:
    return _ivf_or_none(index) is not None


def nlist(index: "object") -> int:
    """Inverted lists of an IVF index; 0 for others."""
    ivf = _ivf_or_none(index)
    return int(ivf.nlist) if ivf is not None else 0


def is_hnsw(factory: str) -> bool:
    return "HNSW" in factory


def set_search_params(index: "object", nprobe: int, ef_search: int) -> None:
    """nprobe for IVF, efSearch for HNSW; ignored by indexes without them."""
    import faiss

    ivf = _ivf_or_none(index)
    if ivf is not None and nprobe:
        ivf.nprobe = min(nprobe, ivf.nlist)
    if ef_search:
        try:
            faiss.ParameterSpace().set_index_parameter(index, "efSearch", ef_search)
        except RuntimeError:  # no HNSW inside
            pass
