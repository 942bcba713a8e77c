"""Choosing a FAISS index for a row count, a dimension and a memory budget; building and tuning it."""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Iterator

import numpy as np

FLAT_MAX_ROWS = 100_000   # below this, exact search is fast enough and needs no training
MIN_POINTS_PER_CENTROID = 39  # below this many points per centroid faiss' k-means warns
PQ_CENTROIDS = 256            # an 8-bit PQ (or OPQ's internal one) fits 256 centroids per sub-quantizer
METRICS = ("ip", "l2")


class FactoryError(ValueError):
    """A factory string faiss refuses (unparsable, or not for this dimension); raised instead of
    faiss' RuntimeError, with faiss' own reason."""


@dataclass(frozen=True)
class TrainingNeed:
    points: int    # the fewest training vectors faiss accepts (k-means needs one per centroid)
    advised: int   # below this faiss warns (39 per centroid)
    what: str      # which part needs them, e.g. "64 IVF lists"


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


def choose_factory(n: int, dim: int, memory_budget: int, *, sharded: bool = False) -> Choice:
    """Flat while small, IVF-Flat while the vectors fit the budget, IVF-PQ (OPQ) beyond: `memory_budget`
    (bytes) is the RAM the index may take in one searching process. With `sharded` (the index may be kept
    as shards, each searched by one process at a time) the budget bounds one shard, not the whole index,
    so IVF-Flat (no compression: recall reaches 1.0 at nprobe = nlist) is kept at any size. Raises
    ValueError when not even 1 byte per vector fits (not sharded)."""
    flat_bytes = n * (4 * dim + 8)
    if n <= FLAT_MAX_ROWS and flat_bytes <= memory_budget:
        return Choice("IDMap2,Flat", f"{n} rows <= {FLAT_MAX_ROWS}: exact search, no training")
    nlist = ivf_lists(n)
    ivf_bytes = flat_bytes + nlist * dim * 4
    if ivf_bytes <= memory_budget:
        return Choice(f"IVF{nlist},Flat", f"{n} rows x {dim}-d = {ivf_bytes / 2**30:.2f} GiB fits "
                                          f"the {memory_budget / 2**30:.2f} GiB budget; nlist ~ 4 sqrt(n)")
    if sharded:
        return Choice(f"IVF{nlist},Flat", f"{n} rows x {dim}-d = {ivf_bytes / 2**30:.2f} GiB exceed the "
                                          f"{memory_budget / 2**30:.2f} GiB budget, but the index is kept as "
                                          "shards each searched within it: uncompressed for recall; "
                                          "nlist ~ 4 sqrt(n)")
    for m in sorted((m for m in range(1, dim + 1) if dim % m == 0 and m <= 128), reverse=True):
        if n >= PQ_CENTROIDS and n * (m + 8) + nlist * dim * 4 <= memory_budget:
            opq = f"OPQ{m}," if dim // m >= 4 else ""
            return Choice(f"{opq}IVF{nlist},PQ{m}",
                          f"{flat_bytes / 2**30:.2f} GiB of raw vectors exceed the "
                          f"{memory_budget / 2**30:.2f} GiB budget of a merged index: {m} bytes per vector "
                          f"with PQ{m}")
    raise ValueError(f"{n} vectors cannot fit {memory_budget} bytes even at 1 byte per vector"
                     + (f" (PQ needs {PQ_CENTROIDS} rows to train)" if n < PQ_CENTROIDS else "")
                     + "; raise memory_budget")


def with_ids(factory: str) -> str:
    """Indexes that cannot take explicit ids (Flat, HNSW, PQ) are wrapped in an IDMap2 (which can
    also give vectors back by id, for query expansion)."""
    return factory if "IVF" in factory or factory.startswith("IDMap") else f"IDMap2,{factory}"


def metric_type(metric: str) -> int:
    import faiss

    return faiss.METRIC_INNER_PRODUCT if metric == "ip" else faiss.METRIC_L2


def faiss_reason(exc: RuntimeError) -> str:
    """faiss' own sentence from its RuntimeError, without the C++ function and file it names."""
    text = str(exc).strip().splitlines()[-1] if str(exc).strip() else repr(exc)
    for marker in ("failed: ", "Error: "):
        if marker in text:
            return text.rsplit(marker, 1)[1].strip()
    return text.rsplit(": ", 1)[-1].strip()


def build_empty(factory: str, dim: int, metric: str) -> "object":
    """The empty faiss index for `factory` (ids added by an IDMap2 where needed, see `with_ids`).

    Raises FactoryError (with faiss' reason) for a string faiss cannot parse or build for `dim`,
    e.g. PQ48 on 100-d vectors (the dimension must be a multiple of the PQ's sub-quantizers)."""
    import faiss

    try:
        return faiss.index_factory(dim, with_ids(factory), metric_type(metric))
    except RuntimeError as exc:
        raise FactoryError(f"{factory!r} for {dim}-d vectors: {faiss_reason(exc)}") from None


def check_parses(factory: str, metric: str) -> None:
    """Config-time check that faiss can build `factory` for *some* dimension (the table's is not
    known yet): tried at multiples of every PQ size in it. Raises FactoryError."""
    base = math.lcm(8, *(int(m) for m in re.findall(r"PQ(\d+)", factory)))
    first = None
    for dim in (base, 8 * base, 64 * base):
        try:
            build_empty(factory, dim, metric)
            return
        except FactoryError as exc:
            first = first or exc
    raise FactoryError(str(first).replace(f" for {base}-d vectors", ""))


def training_need(index: "object") -> TrainingNeed:
    """How many training vectors the untrained parts of `index` need: an IVF one per list, a PQ
    2^nbits per sub-quantizer, an OPQ rotation 256 (it fits an 8-bit PQ: faiss OPQMatrix::train)."""
    import faiss

    needs = [TrainingNeed(0, 0, "nothing to train")]
    if not index.is_trained:
        for part in _parts(index):
            if isinstance(part, faiss.IndexIVF):
                needs.append(_need(part.nlist, f"{part.nlist} IVF lists"))
            if isinstance(getattr(part, "pq", None), faiss.ProductQuantizer):
                pq = part.pq
                needs.append(_need(pq.ksub, f"PQ{pq.M}x{pq.nbits} ({pq.ksub} centroids per sub-quantizer)"))
            if isinstance(part, faiss.OPQMatrix):
                needs.append(_need(PQ_CENTROIDS, f"the OPQ{part.M} rotation ({PQ_CENTROIDS} centroids)"))
    return max(needs, key=lambda need: need.points)


def _need(centroids: int, what: str) -> TrainingNeed:
    return TrainingNeed(centroids, centroids * MIN_POINTS_PER_CENTROID, what)


def _parts(index: "object") -> Iterator["object"]:
    """`index` and every index or vector transform inside it (IDMap, pre-transform, quantizer, ...)."""
    import faiss

    index = faiss.downcast_index(index)
    yield index
    if isinstance(index, faiss.IndexPreTransform):
        for i in range(index.chain.size()):
            yield faiss.downcast_VectorTransform(index.chain.at(i))
    for name in ("index", "storage", "base_index", "quantizer"):
        inner = getattr(index, name, None)
        if isinstance(inner, faiss.Index):
            yield from _parts(inner)


def train(index: "object", sample: np.ndarray, seed: int) -> None:
    """Trains in place on `sample` [n, dim] float32 with a fixed k-means seed.

    Raises FactoryError when faiss refuses the sample (e.g. fewer points than centroids); callers
    should check `training_need` first, this is the net for index types it does not know."""
    ivf = _ivf_or_none(index)
    if ivf is not None:
        ivf.cp.seed = seed
    if not index.is_trained:
        try:
            index.train(np.ascontiguousarray(sample, dtype=np.float32))
        except RuntimeError as exc:
            raise FactoryError(f"training on {len(sample)} vectors failed: {faiss_reason(exc)}") from None


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


def is_exact(index: "object") -> bool:
    """Whether `index` searches exhaustively with exact distances: a flat index, bare or in an IDMap."""
    import faiss

    index = faiss.downcast_index(index)
    inner = getattr(index, "index", None)
    if isinstance(index, (faiss.IndexIDMap, faiss.IndexIDMap2)) and isinstance(inner, faiss.Index):
        index = faiss.downcast_index(inner)
    return isinstance(index, faiss.IndexFlat)


def is_compressed(index: "object") -> bool:
    """Whether `index` is an IVF whose codes are smaller than the float32 vectors (PQ, SQ): its distances
    are approximate, so even nprobe = nlist does not give the exact top-k. False for IVF-Flat and others."""
    ivf = _ivf_or_none(index)
    return ivf is not None and ivf.code_size < 4 * ivf.d


def is_hnsw(factory: str) -> bool:
    """An HNSW graph holds the vectors (not merely an IVF's coarse quantizer, as in IVF64_HNSW32)."""
    return "HNSW" in factory and "IVF" not in factory


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


def index_bytes(factory_string: str, n: int, dim: int) -> int:
    """Estimated bytes of an index of `factory_string` holding n `dim`-d vectors: per vector its code (PQm:
    m bytes, SQ8: dim, SQ4: dim / 2, SQfp16: 2 dim, else 4 dim float32) + an 8-byte id (+ 2M 4-byte links
    for an HNSW graph), plus the IVF centroids. An estimate for planning (merge: auto), not a measurement."""
    pq, sq = re.search(r"PQ(\d+)", factory_string), re.search(r"SQ(fp16|\d+)", factory_string)
    code = int(pq.group(1)) if pq else (2 * dim if sq.group(1) == "fp16" else dim * int(sq.group(1)) // 8) \
        if sq else 4 * dim
    hnsw = re.search(r"HNSW(\d*)", factory_string) if is_hnsw(factory_string) else None
    links = 2 * int(hnsw.group(1) or 32) * 4 if hnsw else 0
    ivf = re.search(r"IVF(\d+)", factory_string)
    return n * (code + 8 + links) + (int(ivf.group(1)) * dim * 4 if ivf else 0)
