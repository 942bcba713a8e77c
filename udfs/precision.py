"""Inference precision: fp32, or bf16 autocast (CPUs with AVX-512 BF16 or AMX run it natively)."""
from __future__ import annotations

import contextlib
from typing import ContextManager

PRECISIONS = ("fp32", "bf16")


def with_precision(label: str, precision: str) -> str:
    """The `model` column's value: `name` for fp32, `name+bf16` otherwise."""
    return label if precision == "fp32" else f"{label}+{precision}"


def split_label(label: str) -> tuple[str, str]:
    """`name+bf16` → (`name`, `bf16`); a label without a precision suffix is fp32."""
    base, sep, suffix = label.rpartition("+")
    return (base, suffix) if sep and suffix in PRECISIONS else (label, "fp32")


def autocast(precision: str) -> ContextManager:
    """Matmuls and convolutions in bf16 (accumulating in fp32), the rest in fp32; a no-op for fp32."""
    if precision == "fp32":
        return contextlib.nullcontext()
    import torch

    return torch.autocast("cpu", dtype=torch.bfloat16)


def native_bf16() -> bool:
    """Whether this CPU has bf16 instructions (else bf16 is emulated and slower than fp32). Read from
    /proc/cpuinfo where there is one, so a driver need not import torch to ask."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            flags = next((line.split() for line in fh if line.startswith("flags")), [])
        return "avx512_bf16" in flags or "amx_bf16" in flags
    except OSError:
        import torch

        try:
            return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):
            return False
