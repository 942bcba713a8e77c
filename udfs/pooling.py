"""Global image descriptors from CNN feature maps: average or GeM pooling, horizontal-flip averaging,
multi-scale descriptors, an intermediate block concatenated with the last, and the `model` label that
records them."""
from __future__ import annotations

import re
from typing import Sequence

POOLINGS = ("avg", "gem")
GEM_EPS = 1e-6  # the clamp of Radenović et al.'s cirtorch GeM (activations below it count as eps)
SCALE_RANGE = (0.25, 4.0)  # a crop resized by more is a different image, or a memory problem


def gem(x: "object", p: float) -> "object":
    """Generalized-mean pooling, [n, c, h, w] → [n, c]: (mean over h, w of max(x, eps)^p)^(1/p).

    Radenović, Tolias, Chum, "Fine-tuning CNN Image Retrieval with No Human Annotation" (TPAMI 2018); p is
    learnt there, fixed here (p = 1 is average pooling, p → ∞ max pooling; 3 is the paper's usual value)."""
    return x.clamp(min=GEM_EPS).pow(p).mean(dim=(2, 3)).pow(1.0 / p)


def pool(out: "object", pooling: str, p: float) -> "object":
    """One feature tensor → [n, c] float32, not normalised: a map [n, c, h, w] pooled (avg or gem), tokens
    [n, t, c] averaged (transformers), a vector [n, c] kept."""
    out = out.float()
    if out.ndim == 4:
        return gem(out, p) if pooling == "gem" else out.mean(dim=(2, 3))
    if out.ndim == 3:
        return out.mean(dim=1)
    return out


def descriptor(outs: Sequence["object"], pooling: str, p: float) -> "object":
    """The pooled features of one forward pass, [n, c] (one tensor), or with an intermediate block the
    concatenation of each pooled part L2-normalised, [n, c_last + c_block] (not yet normalised as a whole)."""
    import torch

    pooled = [pool(out, pooling, p) for out in outs]
    if len(pooled) == 1:
        return pooled[0]
    return torch.cat([torch.nn.functional.normalize(part, dim=1) for part in pooled], dim=1)


def multi_scale(scales: Sequence[float]) -> bool:
    """Whether `scales` asks for more than the one crop at scale 1."""
    return tuple(scales) != (1.0,)


def check_scales(scales: Sequence[float], engine: str) -> None:
    """Raises SpecError (field `scales`) unless `scales` is a non-empty list of distinct factors in
    SCALE_RANGE; several scales run in torch, so engine must be torch or auto."""
    from udfs.status import SpecError

    low, high = SCALE_RANGE
    if not scales or not all(isinstance(s, (int, float)) and low <= s <= high for s in scales):
        raise SpecError("scales", f"scales must be a non-empty list of factors from {low:g} to {high:g} "
                                  f"(e.g. [1, 1.414]), got {list(scales)!r}")
    if len(set(scales)) != len(scales):
        raise SpecError("scales", f"scales {list(scales)!r} repeats a factor")
    if multi_scale(scales) and engine not in ("torch", "auto"):
        raise SpecError("scales", f"scales {list(scales)!r} with engine {engine}: a multi-scale descriptor runs "
                                  "in torch; accepted: engine torch or auto (which then picks torch)")


def rescaled(x: "object", size: int) -> "object":
    """[n, c, h, w] → [n, c, size, size]: bilinear with antialiasing (so a downscale matches a resize
    of the image itself), unchanged when it already has that size. The multi-scale descriptor of
    Radenović, Tolias, Chum (TPAMI 2018) pools each scale and sums the L2-normalised results; their
    scales are 1, 1/√2 and √2 (on iconic200, 1 and √2 measured best: BENCHMARKS.md)."""
    import torch

    if x.shape[-2:] == (size, size):
        return x
    return torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", antialias=True,
                                           align_corners=False)


def label_suffix(pooling: str, p: float, flip: bool, concat_layer: str,
                 scales: Sequence[float] = (1.0,)) -> str:
    """What the `model` column adds to the model's name: `+gem3`, `+flip`, `+concat:_blocks.10`,
    `+scales:1,1.414` (avg, no flip, no concatenation and scale 1 alone add nothing, so older labels still
    read the same)."""
    parts = ([f"gem{p:g}"] if pooling == "gem" else []) + (["flip"] if flip else []) + \
        ([f"concat:{concat_layer}"] if concat_layer else []) + \
        ([f"scales:{','.join(str(float(s)) for s in scales)}"] if multi_scale(scales) else [])
    return "".join(f"+{part}" for part in parts)


def parse_suffix(tokens: Sequence[str]) -> dict:
    """`label_suffix`'s tokens (without the `+`), and `whiten:folder`, → keyword arguments of
    ImageModelSpec; ValueError on a token it does not know."""
    found: dict = {}
    for token in tokens:
        if token == "flip":
            found["flip"] = True
        elif token.startswith("whiten:"):
            found["whitening"] = token[len("whiten:"):]
        elif token.startswith("concat:"):
            found["concat_layer"] = token[len("concat:"):]
        elif re.fullmatch(r"scales:\d+(\.\d+)?(,\d+(\.\d+)?)*", token):
            found["scales"] = tuple(float(s) for s in token[len("scales:"):].split(","))
        elif re.fullmatch(r"gem\d+(\.\d+)?", token):
            found["pooling"], found["gem_p"] = "gem", float(token[3:])
        else:
            raise ValueError(f"unknown part {token!r} of an image model label")
    return found
