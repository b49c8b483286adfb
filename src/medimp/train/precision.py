"""Which numeric precision a run uses: ``precision: auto`` picks the faster safe one here.

bf16 autocast is only a gain where the hardware computes bf16 fast: CUDA GPUs that support it
natively (Ampere and later), and x86 CPUs with AMX-BF16 (Intel Sapphire Rapids and later),
where oneDNN runs convolutions and matrix products on the AMX tiles. A CPU with AVX512-BF16
alone (Intel Cooper Lake; Sapphire Rapids class guests without AMX; AMD Zen 4 and later) has
bf16 dot products, but its bf16 convolutions run no faster than fp32 ones and every
fp32<->bf16 conversion is an extra memory pass, so a training step is slower in bf16 there
(measured: docs/performance.md). ``auto`` therefore means bf16 on a CPU only with
``amx_bf16``, and fp32 elsewhere: on such a machine a run is exactly what it was before
``auto`` existed (same results, same determinism). ``precision: bf16-mixed`` still runs bf16
on any CPU.

The CPU's flags are not the whole story: ``ONEDNN_MAX_CPU_ISA`` (or the older
``DNNL_MAX_CPU_ISA``) below ``AVX512_CORE_AMX`` and ``ATEN_CPU_CAPABILITY`` below ``avx512``
keep oneDNN and PyTorch's kernels off those instructions (``ONEDNN_MAX_CPU_ISA=AVX2
ATEN_CPU_CAPABILITY=avx2`` is how an AVX2-only CPU is emulated, docs/performance.md), so
``auto`` chooses fp32 then too.

The rule itself, :func:`explain_cpu_precision`, is a pure function of the CPU's flags and the
environment; :func:`explain_precision` feeds it this machine's.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch

__all__ = ["cpu_bf16_flags", "cpu_supports_bf16", "explain_cpu_precision", "explain_precision",
           "isa_limit", "resolve_precision"]

_BF16_FLAGS = ("amx_bf16", "avx512_bf16")
# oneDNN ISA names (ONEDNN_MAX_CPU_ISA) that allow the AMX tiles; "" / ALL / DEFAULT: no cap
_AMX_ISAS = {"AVX512_CORE_AMX", "AVX512_CORE_AMX_FP16", "AVX10_1_512_AMX",
             "AVX10_1_512_AMX_FP16", "AVX10_2_512_AMX_2", "ALL", "DEFAULT", ""}
# ... and those that allow the AVX512-BF16 dot products (the AMX ones included)
_BF16_ISAS = _AMX_ISAS | {"AVX512_CORE_BF16", "AVX512_CORE_FP16", "AVX10_1_512",
                          "AVX10_2_512"}
_WHY_NOT_AVX512_BF16 = ("bf16 convolutions run no faster than fp32 without AMX and the "
                        "fp32<->bf16 conversions cost extra memory passes, so a training step "
                        "is slower in bf16 (docs/performance.md); 'precision: bf16-mixed' "
                        "forces it")


@functools.cache
def cpu_bf16_flags() -> tuple[str, ...]:
    """The CPU's bf16 feature flags (``amx_bf16``, ``avx512_bf16``) found on Linux.

    ``torch.backends.cpu.get_cpu_capability()`` tops out at ``AVX512`` (it names the vector
    kernels PyTorch picked, not AMX or AVX512-BF16), so the flags come from ``/proc/cpuinfo``.
    Other systems report none (bf16 is then not assumed to be fast).
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


def isa_limit(env: Mapping[str, str] | None = None, *, amx: bool = False) -> str | None:
    """The environment variable that keeps the kernels off the bf16 instructions (with
    ``amx``: off the AMX tiles), as ``NAME=value``, or None when nothing does. ``env``:
    ``os.environ`` by default."""
    env = os.environ if env is None else env
    allowed = _AMX_ISAS if amx else _BF16_ISAS
    for name in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA"):
        value = env.get(name)
        if value is not None and value.strip().upper() not in allowed:
            return f"{name}={value}"
    cap = env.get("ATEN_CPU_CAPABILITY")
    if cap is not None and cap.strip().lower() not in ("", "default", "avx512"):
        return f"ATEN_CPU_CAPABILITY={cap}"
    return None


def cpu_supports_bf16() -> bool:
    """True when this CPU has bf16 instructions (AMX-BF16 or AVX512-BF16) and no environment
    variable keeps the kernels off them: bf16 is computed, not emulated (it is not
    necessarily faster than fp32: :func:`explain_cpu_precision`)."""
    return bool(cpu_bf16_flags()) and isa_limit() is None


def explain_cpu_precision(flags: Iterable[str],
                          env: Mapping[str, str] | None = None) -> tuple[str, str]:
    """``(precision, why)`` that ``precision: auto`` gives on a CPU with these feature
    ``flags`` (``/proc/cpuinfo`` names; any others are ignored) under the environment ``env``
    (``os.environ`` by default): ``bf16-mixed`` only with ``amx_bf16`` and nothing keeping the
    kernels off AMX, else ``32``."""
    have = set(flags)
    bf16 = [f for f in _BF16_FLAGS if f in have]
    if not bf16:
        return "32", ("auto: this CPU has no bf16 instructions (no amx_bf16/avx512_bf16 in "
                      "/proc/cpuinfo); bf16 would be emulated and slower than fp32")
    if "amx_bf16" not in have:
        limit = isa_limit(env)
        if limit is not None:
            return "32", (f"auto: the CPU has avx512_bf16 but {limit} keeps the kernels off "
                          "it; bf16 would be emulated and slower than fp32")
        return "32", f"auto: the CPU has avx512_bf16 but no amx_bf16: {_WHY_NOT_AVX512_BF16}"
    limit = isa_limit(env, amx=True)
    if limit is not None:
        return "32", (f"auto: the CPU has {'/'.join(bf16)} but {limit} keeps the kernels off "
                      f"AMX; {_WHY_NOT_AVX512_BF16}")
    return "bf16-mixed", "auto: the CPU computes bf16 natively on AMX (amx_bf16)"


def explain_precision(precision: str, accelerator: str = "auto") -> tuple[str, str]:
    """``(the Lightning precision a run uses, why)``: ``auto`` -> ``bf16-mixed`` on a GPU that
    computes bf16 natively or a CPU with AMX-BF16 (see module docs), else ``32``; any other
    value is returned unchanged."""
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
    return explain_cpu_precision(cpu_bf16_flags())


def resolve_precision(precision: str, accelerator: str = "auto") -> str:
    """The Lightning precision a run uses (:func:`explain_precision` without the reason)."""
    return explain_precision(precision, accelerator)[0]
