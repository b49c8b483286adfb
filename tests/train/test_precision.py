"""precision: auto picks bf16 only where the hardware computes it natively."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from medimp.train.precision import cpu_bf16_flags, cpu_supports_bf16, resolve_precision


def _flags() -> set[str]:
    path = Path("/proc/cpuinfo")
    if not path.is_file():
        return set()
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def test_cpu_flags_are_read_from_cpuinfo() -> None:
    assert set(cpu_bf16_flags()) == _flags() & {"amx_bf16", "avx512_bf16"}
    assert cpu_supports_bf16() == bool(cpu_bf16_flags())


@pytest.mark.parametrize("explicit", ["32", "bf16-mixed", "16-mixed"])
def test_an_explicit_precision_is_kept(explicit: str) -> None:
    assert resolve_precision(explicit, "cpu") == explicit


def test_auto_on_cpu_is_bf16_only_with_native_support() -> None:
    want = "bf16-mixed" if cpu_supports_bf16() else "32"
    assert resolve_precision("auto", "cpu") == want
    if not torch.cuda.is_available():
        assert resolve_precision("auto", "auto") == want


@pytest.mark.parametrize(("env", "value"), [("ONEDNN_MAX_CPU_ISA", "AVX2"),
                                            ("DNNL_MAX_CPU_ISA", "avx512_core"),
                                            ("ATEN_CPU_CAPABILITY", "avx2")])
def test_auto_is_fp32_when_the_kernels_are_kept_off_bf16(monkeypatch, env, value) -> None:
    """The AVX2-only emulation of docs/performance.md: bf16 would be emulated, so fp32; the
    reason names the variable (or the missing flags on a CPU without them)."""
    from medimp.train.precision import explain_precision

    monkeypatch.setenv(env, value)
    chosen, why = explain_precision("auto", "cpu")
    assert chosen == "32" and not cpu_supports_bf16()
    assert (f"{env}={value}" in why) if cpu_bf16_flags() else ("no bf16 instructions" in why)


def test_auto_says_why(monkeypatch) -> None:
    from medimp.train.precision import explain_precision

    for env in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY"):
        monkeypatch.delenv(env, raising=False)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_AMX")  # allows bf16
    chosen, why = explain_precision("auto", "cpu")
    if cpu_bf16_flags():
        assert chosen == "bf16-mixed" and "natively" in why and cpu_bf16_flags()[0] in why
    else:
        assert chosen == "32" and "no bf16 instructions" in why
    assert explain_precision("32", "cpu") == ("32", "precision '32' as configured")


def test_auto_is_fp32_on_a_gpu_that_only_emulates_bf16(monkeypatch) -> None:
    """A V100 or T4 (compute capability 7.x): torch's ``is_bf16_supported()`` says yes by
    default because a bf16 tensor can be made there, but it has no bf16 tensor cores; ``auto``
    keeps fp32 and says why (docs/train.md: bf16 on Ampere or later)."""
    from medimp.train.precision import explain_precision

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "Tesla V100-SXM2-32GB")
    # what torch answers on such a GPU: yes with emulation, no without
    monkeypatch.setattr(torch.cuda, "is_bf16_supported",
                        lambda including_emulation=True: including_emulation)
    chosen, why = explain_precision("auto", "gpu")
    assert chosen == "32" and "V100" in why and "no native bf16" in why
