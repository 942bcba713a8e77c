"""The per-worker model cache: each Python worker loads a model once and reuses it across tasks."""
from __future__ import annotations

import threading
from typing import Any, Callable, Hashable

_MODELS: dict[Hashable, Any] = {}
_LOCK = threading.Lock()


def get_model(key: Hashable, loader: Callable[[], Any]) -> Any:
    """The model cached under `key` (model name + version), loading it on first use."""
    with _LOCK:
        if key not in _MODELS:
            _MODELS[key] = loader()
        return _MODELS[key]


def get_latest(key: Hashable, version: str, loader: Callable[[], Any]) -> Any:
    """One version per key: a resource republished under the same key (an index rebuilt at the
    same path) replaces, and frees, the version a warm worker still holds."""
    with _LOCK:
        held = _MODELS.get(key)
        if held is None or held[0] != version:
            _MODELS.pop(key, None)  # drop the old one before the new one is loaded beside it
            _MODELS[key] = (version, loader())
        return _MODELS[key][1]


def loaded_keys() -> list[Hashable]:
    with _LOCK:
        return list(_MODELS)


def set_torch_threads(requested: int) -> int:
    """Threads for torch in this task: `requested`, or the task's cores, so tasks don't oversubscribe."""
    import torch

    threads = requested or _task_cpus()
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads


def set_faiss_threads(requested: int = 0) -> int:
    """OpenMP threads for faiss in this task; oversubscribed OpenMP spin-waits can cost 100x. Its callers
    (jobs.indexing) import the `index` package first, which loads faiss on this CPU's BLAS kernels (index.blas)."""
    import faiss

    threads = requested or _task_cpus()
    faiss.omp_set_num_threads(threads)
    return threads


def _task_cpus() -> int:
    try:
        from pyspark import TaskContext

        ctx = TaskContext.get()
        return max(1, int(ctx.cpus())) if ctx is not None else 1
    except Exception:  # outside Spark, or an old TaskContext without cpus()
        return 1
