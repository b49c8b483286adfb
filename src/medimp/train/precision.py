"""Which numeric precision a run uses: ``precision: auto`` picks the fastest safe one here.

bf16 autocast is only a gain where the hardware computes in bf16: CUDA GPUs that support it
(Ampere and later), and x86 CPUs with AMX-BF16 or AVX512-BF16 (Intel Cooper Lake, Sapphire
Rapids and later; AMD Zen 4 and later), where oneDNN runs convolutions and matrix products in
bf16. Elsewhere bf16 is emulated and slower than fp32, so ``auto`` means fp32 there: on such a
machine a run is exactly what it was before ``auto`` existed (same results, same determinism).
"""

from __future__ import annotations

import functools
from pathlib import Path

import torch

__all__ = ["cpu_bf16_flags", "cpu_supports_bf16", "resolve_precision"]

_BF16_FLAGS = ("amx_bf16", "avx512_bf16")


@functools.cache
def cpu_bf16_flags() -> tuple[str, ...]:
    """The CPU's native-bf16 feature flags (``amx_bf16``, ``avx512_bf16``) found on Linux.

    ``torch.backends.cpu.get_cpu_capability()`` tops out at ``AVX512`` (it names the vector
    kernels PyTorch picked, not AMX), so the flags come from ``/proc/cpuinfo``. Other systems
    report none (bf16 is then not assumed to be fast).
    """
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[-1].split())
            return tuple(f for f in _BF16_FLAGS if f in flags)
    return ()


def cpu_supports_bf16() -> bool:
    """True when this CPU computes bf16 natively (AMX-BF16 or AVX512-BF16)."""
    return bool(cpu_bf16_flags())


def resolve_precision(precision: str, accelerator: str = "auto") -> str:
    """The Lightning precision a run uses: ``auto`` -> ``bf16-mixed`` where bf16 is native
    (see module docs), else ``32``; any other value is returned unchanged."""
    if precision != "auto":
        return precision
    on_gpu = accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()
    if on_gpu:
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "32"
    return "bf16-mixed" if cpu_supports_bf16() else "32"
