"""Intermediate layers of a CNN: checking their names, and forward hooks that return them."""
from __future__ import annotations

from typing import Callable


class _Stop(Exception):
    """Raised by the layer hook to skip the rest of the network."""


def missing(net: "object", name: str, model: str) -> str:
    """"" when `name` is empty or a module of `net` (dotted, e.g. `_blocks.10`), else the reason."""
    if not name or name in dict(net.named_modules()):
        return ""
    top = ", ".join(n for n, _ in net.named_children())
    return f"{name!r} is not in {model}; top-level modules: {top} (use dotted names such as `_blocks.10`)"


def tapped(net: "object", forward: Callable, layer: str, concat_layer: str) -> Callable:
    """A `features` function: the output of `layer` (the rest of the network skipped) instead of
    `forward`'s, and with `concat_layer` a list [that output, the block's output]. Names must exist."""
    captured: dict = {}

    def stop(_module, _inputs, output):
        captured["x"] = output
        raise _Stop

    def keep(_module, _inputs, output):
        captured["block"] = output

    if concat_layer:
        net.get_submodule(concat_layer).register_forward_hook(keep)
    if layer:
        net.get_submodule(layer).register_forward_hook(stop)

    def features(x):
        try:
            captured["x"] = forward(x)
        except _Stop:
            pass
        if not concat_layer:
            return captured.pop("x")
        if "block" not in captured:
            raise ValueError(f"concat_layer {concat_layer!r} does not run before layer {layer!r}")
        return [captured.pop("x"), captured.pop("block")]

    return features
