"""Inference engines: torch, or the model exported to ONNX and run by ONNX Runtime or OpenVINO."""
from __future__ import annotations

import dataclasses
import importlib.util
import logging
import os
import threading
from dataclasses import dataclass
from typing import Callable

import numpy as np

from udfs import engine_exports
from udfs.status import SpecError

log = logging.getLogger(__name__)

ENGINES = ("torch", "onnx", "openvino")
PACKAGES = {"onnx": "onnxruntime", "openvino": "openvino"}
# `engine: auto` = the fastest engine whose vectors stay within cosine 0.999 of torch's (bf16: 0.99, as
# torch's autocast), per kind of model and precision, measured on the project's 2-core benchmark machine
# on 2026-11-30 under heavy load from other work (load average 15-20): model time alone, 1 thread,
# interleaved, best of 4 (images: onnx 2.5x torch fp32, openvino 2.3x; openvino bf16 5.4x, torch bf16
# 1.6x; texts: openvino 1.24x, onnx 1.02x; openvino bf16 2.9x, torch bf16 1.9x), and bench/embed.py
# --quick's Spark rows (BENCHMARKS.md), which agree for images and for texts at bf16. For texts at fp32
# the two disagree (the Spark rows put torch at 2x openvino, model time alone openvino at 1.24x torch):
# torch stays until a quiet full bench/embed.py run settles it. Re-measure there before changing a row.
# Word vectors are looked up, not computed: always torch.
AUTO = {("images", "fp32"): "onnx", ("images", "bf16"): "openvino",
        ("texts", "fp32"): "torch", ("texts", "bf16"): "openvino"}


@dataclass(frozen=True)
class EngineOptions:
    """How to run an exported model: the engine, the precision, where exports are cached."""

    engine: str = "torch"
    precision: str = "fp32"
    cache_dir: str = ""  # empty = default_cache_dir()


def resolve(engine: str, kind: str, precision: str) -> str:
    """`auto` → the measured winner for `kind` (images, texts, words) at `precision` (AUTO), or torch
    when its package is not installed; any other engine is returned as it is."""
    if engine != "auto":
        return engine
    chosen = AUTO.get((kind, precision), "torch")
    return chosen if chosen == "torch" or installed(chosen) else "torch"


def installed(engine: str) -> bool:
    return engine == "torch" or importlib.util.find_spec(PACKAGES[engine]) is not None


def check(engine: str, precision: str) -> None:
    """Raises SpecError (field `engine`) naming what is wrong with an engine and a precision; auto passes
    (`resolve` picks an installed engine that runs the precision)."""
    if engine == "auto":
        return
    if engine not in ENGINES:
        raise SpecError("engine", f"engine {engine!r}; accepted: auto, {', '.join(ENGINES)}")
    if not installed(engine):
        raise SpecError("engine", f"engine {engine} needs the `{PACKAGES[engine]}` package (pip install it; "
                         "requirements.txt pins it)")
    if engine == "onnx" and precision != "fp32":
        raise SpecError("engine", f"precision {precision} with engine onnx: ONNX Runtime's CPU provider has no "
                         "bf16 kernels; accepted: precision fp32 with engine onnx, or precision bf16 with "
                         "engine openvino or torch")


def default_cache_dir() -> str:
    """$XDG_CACHE_HOME/sparkamp/engines, else ~/.cache/sparkamp/engines: local to each machine."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "sparkamp", "engines")


class Runner:
    """An exported model compiled by ONNX Runtime or OpenVINO: `runner(feeds)` → its one output.

    `feeds` maps the graph's input names (`inputs`) to numpy arrays; the output is float32. Threads:
    `threads` intra-op threads and no inter-op pool, so Spark's one task per core does not
    oversubscribe (the count torch has: udfs.cache.set_torch_threads sets it per task). OpenVINO runs
    f32 unless the precision is bf16 (its CPU plugin would pick bf16 by itself on CPUs with AMX).
    """

    def __init__(self, export: engine_exports.Export, options: EngineOptions, threads: int) -> None:
        self.export, self.engine, self.inputs = export, options.engine, export.inputs
        self._lock = threading.Lock()  # an OpenVINO infer request serves one call at a time
        if options.engine == "onnx":
            import onnxruntime

            session = onnxruntime.SessionOptions()
            session.intra_op_num_threads, session.inter_op_num_threads = threads, 1
            session.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
            session.log_severity_level = 3  # errors only: its graph-rewrite notes are not for users
            self._session = onnxruntime.InferenceSession(export.path, session,
                                                         providers=["CPUExecutionProvider"])
        else:
            import openvino

            # no pinning: Spark's tasks each hold one core, and OpenVINO cannot know which
            compiled = openvino.Core().compile_model(export.path, "CPU", {
                "INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": 1, "ENABLE_CPU_PINNING": False,
                "INFERENCE_PRECISION_HINT": "bf16" if options.precision == "bf16" else "f32"})
            self._request = compiled.create_infer_request()

    def __call__(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        if self.engine == "onnx":
            return self._session.run(None, feeds)[0]
        with self._lock:
            self._request.infer(feeds)
            return np.array(self._request.get_output_tensor(0).data, dtype=np.float32)


def load(graph: engine_exports.Graph, options: EngineOptions) -> Runner:
    """The graph exported to ONNX (or found in the cache: engine_exports.cached) and compiled for
    `options.engine` (not auto). Raises engine_exports.ExportError when torch cannot export the model,
    OSError when the cache folder cannot be written."""
    import torch

    export = engine_exports.cached(graph, options.cache_dir or default_cache_dir())
    return Runner(export, options, torch.get_num_threads())


def model_runner(options: EngineOptions, kind: str, graph: Callable[[], engine_exports.Graph]) -> Runner | None:
    """What runs a model of `kind` (images, texts): None = torch (engine torch, or auto resolving to
    torch), else `load(graph(), ...)` for the engine. With engine auto, a model torch cannot export runs
    in torch (a warning) instead of failing; with a named engine the ExportError is raised."""
    engine = resolve(options.engine, kind, options.precision)
    if engine == "torch":
        return None
    try:
        return load(graph(), dataclasses.replace(options, engine=engine))
    except engine_exports.ExportError as exc:
        if options.engine != "auto":
            raise
        log.warning("engine auto: %s; running the model with torch", exc)
        return None
