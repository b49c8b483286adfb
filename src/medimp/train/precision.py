"""Which numeric precision a run uses: ``precision: auto`` picks the fastest safe one here.

bf16 autocast is only a gain where the hardware computes in bf16: CUDA GPUs that support it
(Ampere and later), and x86 CPUs with AMX-BF16 or AVX512-BF16 (Intel Cooper Lake, Sapphire
Rapids and later; AMD Zen 4 and later), where oneDNN runs convolutions and matrix products in
bf16. Elsewhere bf16 is emulated and slower than fp32, so ``auto`` means fp32 there: on such a
machine a run is exactly what it was before ``auto`` existed (same results, same determinism).

The CPU's flags are not the whole story: ``ONEDNN_MAX_CPU_ISA`` (or the older
``DNNL_MAX_CPU_ISA``) below ``AVX512_CORE_BF16`` and ``ATEN_CPU_CAPABILITY`` below
``avx512`` keep oneDNN and PyTorch's kernels off the bf16 instructions (this is how an AVX2-only
CPU is emulated, docs/performance.md), so ``auto`` chooses fp32 then too.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import torch

__all__ = ["cpu_bf16_flags", "cpu_supports_bf16", "explain_precision", "isa_limit",
           "resolve_precision"]

_BF16_FLAGS = ("amx_bf16", "avx512_bf16")
# oneDNN ISA names (ONEDNN_MAX_CPU_ISA) that include the bf16 dot-product instructions
_BF16_ISAS = {"AVX512_CORE_BF16", "AVX512_CORE_FP16", "AVX512_CORE_AMX", "AVX512_CORE_AMX_FP16",
              "AVX10_1_512", "AVX10_1_512_AMX", "AVX10_1_512_AMX_FP16", "AVX10_2_512",
              "AVX10_2_512_AMX_2", "ALL", "DEFAULT", ""}


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


def isa_limit() -> str | None:
    """The environment variable that keeps the kernels off bf16 instructions, as
    ``NAME=value``, or None when nothing does."""
    for name in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA"):
        value = os.environ.get(name)
        if value is not None and value.strip().upper() not in _BF16_ISAS:
            return f"{name}={value}"
    cap = os.environ.get("ATEN_CPU_CAPABILITY")
    if cap is not None and cap.strip().lower() not in ("", "default", "avx512"):
        return f"ATEN_CPU_CAPABILITY={cap}"
    return None


def cpu_supports_bf16() -> bool:
    """True when this CPU computes bf16 natively (AMX-BF16 or AVX512-BF16) and no
    environment variable keeps the kernels off those instructions."""
    return bool(cpu_bf16_flags()) and isa_limit() is None


def explain_precision(precision: str, accelerator: str = "auto") -> tuple[str, str]:
    """``(the Lightning precision a run uses, why)``: ``auto`` -> ``bf16-mixed`` where bf16 is
    native (see module docs), else ``32``; any other value is returned unchanged."""
    if precision != "auto":
        return precision, f"precision {precision!r} as configured"
    on_gpu = accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()
    if on_gpu:
        name = torch.cuda.get_device_name()
        # emulation excluded: torch's default also says yes on a V100 or T4, where bf16 runs
        # without tensor cores and slower than fp32
        if torch.cuda.is_bf16_supported(including_emulation=False):
            return "bf16-mixed", f"auto: the GPU ({name}) computes bf16 natively"
        return "32", f"auto: the GPU ({name}) has no native bf16"
    flags = cpu_bf16_flags()
    if not flags:
        return "32", ("auto: this CPU has no bf16 instructions (no amx_bf16/avx512_bf16 in "
                      "/proc/cpuinfo); bf16 would be emulated and slower than fp32")
    limit = isa_limit()
    if limit is not None:
        return "32", (f"auto: the CPU has {'/'.join(flags)} but {limit} keeps the kernels off "
                      "them; bf16 would be emulated and slower than fp32")
    return "bf16-mixed", f"auto: the CPU computes bf16 natively ({'/'.join(flags)})"


def resolve_precision(precision: str, accelerator: str = "auto") -> str:
    """The Lightning precision a run uses (:func:`explain_precision` without the reason)."""
    return explain_precision(precision, accelerator)[0]
