"""The BLAS kernels faiss runs on: faiss-cpu's wheels bundle OpenBLAS 0.3.15, which does not recognise CPUs newer
than itself (this project's Sapphire Rapids Xeon among them) and falls back to its generic Prescott (SSE3) kernels;
every matrix product faiss makes (k-means training, IVF assignment while adding, exact and coarse search) then runs
several times slower than the CPU allows (1M x 384-d, one process, IVF2048: train + add 72 s on Prescott, 20 s on
SkylakeX kernels; BENCHMARKS.md, bench/index.py --build-only). OpenBLAS fixed the detection in 0.3.19
(OpenMathLib/OpenBLAS#3485; threadpoolctl#117 shows the symptom); until faiss's wheels carry it, OpenBLAS's own
override, the environment variable OPENBLAS_CORETYPE (read once, when the library loads), names the kernels.

No installable library maps a CPU's features to an OpenBLAS kernel name, so `core_type` does (our own code): the
AVX-512 kernels (SkylakeX) when the CPU has the AVX-512 subsets they use, Haswell's with AVX2 and FMA, else
nothing (OpenBLAS's own choice stands). A value the user set is always kept."""
from __future__ import annotations

import os
from pathlib import Path

VARIABLE = "OPENBLAS_CORETYPE"
SKYLAKEX = frozenset({"avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"})
HASWELL = frozenset({"avx2", "fma"})


def core_type(flags: set[str] | frozenset[str]) -> str | None:
    """The OpenBLAS kernel set for a CPU with these /proc/cpuinfo `flags`: "SkylakeX", "Haswell", or None
    (leave OpenBLAS's own detection)."""
    if SKYLAKEX <= flags:
        return "SkylakeX"
    if HASWELL <= flags:
        return "Haswell"
    return None


def cpu_flags(cpuinfo: str = "/proc/cpuinfo") -> frozenset[str]:
    """The first CPU's feature flags from Linux's /proc/cpuinfo; empty elsewhere (macOS, Windows) or when it
    cannot be read."""
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name.strip() == "flags":
            return frozenset(value.split())
    return frozenset()


def load_faiss():
    """Imports faiss with its OpenBLAS on the kernels `core_type` picks for this CPU, unless OPENBLAS_CORETYPE is
    set already (the user's choice) or faiss is loaded already (too late to choose). The variable is set only
    while faiss's libraries load, then removed, so numpy's own (newer) OpenBLAS and child processes keep their
    own detection. Returns the faiss module."""
    import sys

    if "faiss" in sys.modules or VARIABLE in os.environ:
        import faiss
        return faiss
    import numpy  # noqa: F401  numpy's OpenBLAS detects the CPU itself; it is loaded before the variable is set

    chosen = core_type(cpu_flags())
    if chosen:
        os.environ[VARIABLE] = chosen
    try:
        import faiss
    finally:
        if chosen:
            os.environ.pop(VARIABLE, None)
    return faiss


def faiss_kernels() -> list[str]:
    """The kernel sets the OpenBLAS libraries faiss loaded in this process run (threadpoolctl, which comes with
    scikit-learn, reads them): e.g. ["SkylakeX"], or ["Prescott"] for faiss imported before this package."""
    import threadpoolctl

    return [lib["architecture"] for lib in threadpoolctl.threadpool_info()
            if lib["internal_api"] == "openblas" and "faiss" in lib["filepath"]]
