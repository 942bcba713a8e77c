"""FAISS indexes: choosing, training, sharding, merging, searching and the manifest (no Spark here).

faiss is loaded here, before any module of the package uses it, with its BLAS on the kernels this CPU has
(index.blas: faiss-cpu's bundled OpenBLAS falls back to its slowest kernels on CPUs newer than it)."""
from index import blas as _blas

_blas.load_faiss()
