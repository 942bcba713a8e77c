"""ONNX exports of the embedding models, made once per machine and cached by a digest of what they hold."""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

log = logging.getLogger(__name__)

FORMAT = 1              # bump when the exported graphs change meaning (inputs, outputs, pooling)
OUTPUT = "sparkamp_vector"  # not `embedding`: BERT graphs already hold a node of that name
LOCK_SECONDS = 900      # how long a worker waits for another one exporting the same model


class ExportError(RuntimeError):
    """torch could not export a model to ONNX."""


@dataclass
class Graph:
    """What to export: `module(*inputs.values())` → [n, dim] float32, with `inputs` example tensors
    (their names are the graph's input names) whose `dynamic` axes (name → axis → axis name) vary.
    `key` names everything the graph depends on besides the module's weights (which are hashed)."""

    name: str
    module: Any                                 # torch.nn.Module
    inputs: dict[str, Any]                      # name → example torch.Tensor
    dynamic: dict[str, dict[int, str]]
    key: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Export:
    """An exported model: its .onnx file, its input names, and the seconds the export took here (0 when
    it was found in the cache)."""

    path: str
    inputs: tuple[str, ...]
    seconds: float


def module_of(holds: Any, forward: Callable) -> Any:
    """An nn.Module whose forward is `forward(*inputs)` and which holds `holds` (so the weights that
    `forward` uses are the module's, as torch.export wants them)."""
    import torch

    class Forward(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.held = holds

        def forward(self, *inputs: Any) -> Any:
            return forward(*inputs)

    return Forward()


def weights_digest(module: Any) -> str:
    """sha256 of a module's parameters and buffers (names, dtypes, shapes, values) as loaded, whatever
    file they came from (a wheel, a state dict, random in tests)."""
    import torch

    sha = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        tensor = tensor.detach().cpu().contiguous()
        sha.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        if tensor.numel():
            sha.update(tensor.view(-1).view(torch.uint8).numpy().tobytes())
    return sha.hexdigest()


def digest(graph: Graph) -> str:
    """The cache key: the graph's `key`, its inputs, its weights, the format and the exporter's versions."""
    import onnx
    import onnxscript
    import torch

    key = {**graph.key, "format": FORMAT, "weights": weights_digest(graph.module),
           "inputs": {n: [str(t.dtype), [None if axis in graph.dynamic.get(n, {}) else size
                                          for axis, size in enumerate(t.shape)]]
                      for n, t in graph.inputs.items()},
           "versions": [torch.__version__, onnxscript.__version__, onnx.__version__]}
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()


def cached(graph: Graph, cache_dir: str) -> Export:
    """The graph's .onnx file in `cache_dir`, exported first if it is not there.

    Concurrent workers on one machine do not corrupt the cache: one exports under a file lock
    (`filelock`) to a temporary name in the same folder and renames it (atomic on POSIX); the others
    wait on the lock and then read the finished file. Nothing is downloaded.
    """
    from filelock import FileLock, Timeout

    os.makedirs(cache_dir, exist_ok=True)
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", graph.name)[:60]
    path = os.path.join(cache_dir, f"{slug}-{digest(graph)[:24]}.onnx")
    names = tuple(graph.inputs)
    if os.path.isfile(path):
        log.info("engine: reusing the export %s", path)
        return Export(path, names, 0.0)
    try:
        with FileLock(path + ".lock", timeout=LOCK_SECONDS):
            if os.path.isfile(path):  # another worker exported it while this one waited
                log.info("engine: reusing the export %s", path)
                return Export(path, names, 0.0)
            tick = time.perf_counter()
            _export_to(graph, path)
            seconds = time.perf_counter() - tick
    except Timeout:
        raise ExportError(f"waited {LOCK_SECONDS} s for {path}.lock held by another export; remove the "
                          "lock file if no sparkamp process is exporting") from None
    log.info("engine: exported %s to %s in %.1f s", graph.name, path, seconds)
    return Export(path, names, seconds)


def _export_to(graph: Graph, path: str) -> None:
    """torch.onnx.export (the torch.export-based exporter) to a temporary file, then rename."""
    import torch

    dims: dict[str, Any] = {}
    shapes = tuple({axis: dims.setdefault(name, torch.export.Dim(name)) for axis, name in axes.items()}
                   for axes in (graph.dynamic.get(n, {}) for n in graph.inputs))
    fd, tmp = tempfile.mkstemp(prefix=".export-", suffix=".onnx", dir=os.path.dirname(path))
    os.close(fd)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the exporter's notes on axis names and deprecations
            # inputs passed as *inputs whatever the module's signature: the dynamic shapes are one tuple
            module = module_of(graph.module, graph.module).eval()
            torch.onnx.export(module, tuple(graph.inputs.values()), tmp,
                              input_names=list(graph.inputs), output_names=[OUTPUT],
                              dynamic_shapes=(shapes,), dynamo=True, external_data=False, verbose=False)
        os.chmod(tmp, 0o644)  # mkstemp made it private; other users of a shared cache read it too
        os.replace(tmp, path)
    except Exception as exc:  # the exporter raises many kinds; all mean "this model does not export"
        raise ExportError(f"torch.onnx.export could not export {graph.name}: "
                          f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from exc
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
