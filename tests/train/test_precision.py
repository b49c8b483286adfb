"""precision: auto picks bf16 only where the hardware computes it faster than fp32."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from medimp.train.precision import (
    cpu_bf16_flags,
    cpu_supports_bf16,
    explain_cpu_precision,
    explain_precision,
    isa_limit,
    resolve_precision,
)

# /proc/cpuinfo flags of real CPUs (abridged to the vector extensions)
AVX2_ONLY = ["fma", "avx", "avx2", "f16c", "bmi2"]  # e.g. AMD EPYC Zen 2/3
AVX512_BF16 = [*AVX2_ONLY, "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
               "avx512_bf16"]  # e.g. AMD EPYC Zen 4, a Sapphire Rapids guest without AMX
AMX = [*AVX512_BF16, "avx512_fp16", "amx_bf16", "amx_tile", "amx_int8"]  # Sapphire Rapids


def _flags() -> set[str]:
    path = Path("/proc/cpuinfo")
    if not path.is_file():
        return set()
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def test_cpu_flags_are_read_from_cpuinfo(monkeypatch) -> None:
    for env in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY"):
        monkeypatch.delenv(env, raising=False)
    assert set(cpu_bf16_flags()) == _flags() & {"amx_bf16", "avx512_bf16"}
    assert cpu_supports_bf16() == bool(cpu_bf16_flags())


@pytest.mark.parametrize("explicit", ["32", "bf16-mixed", "16-mixed"])
def test_an_explicit_precision_is_kept(explicit: str) -> None:
    assert resolve_precision(explicit, "cpu") == explicit
    assert explain_precision(explicit, "cpu") == (explicit, f"precision {explicit!r} as configured")


def test_auto_on_this_cpu_follows_the_rule_on_its_own_flags() -> None:
    want = explain_cpu_precision(_flags())
    assert explain_precision("auto", "cpu") == want
    if not torch.cuda.is_available():
        assert explain_precision("auto", "auto") == want


def test_auto_is_bf16_only_with_amx() -> None:
    assert explain_cpu_precision(AMX, {}) == (
        "bf16-mixed", "auto: the CPU computes bf16 natively on AMX (amx_bf16)")
    chosen, why = explain_cpu_precision(AVX512_BF16, {})
    assert chosen == "32"
    assert "avx512_bf16 but no amx_bf16" in why and "bf16-mixed" in why  # says how to force it
    chosen, why = explain_cpu_precision(AVX2_ONLY, {})
    assert chosen == "32" and "no bf16 instructions" in why
    assert explain_cpu_precision([], {})[0] == "32"


@pytest.mark.parametrize(("env", "value"), [("ONEDNN_MAX_CPU_ISA", "AVX2"),
                                            ("DNNL_MAX_CPU_ISA", "avx512_core"),
                                            ("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_BF16"),
                                            ("ATEN_CPU_CAPABILITY", "avx2")])
def test_auto_is_fp32_when_the_kernels_are_kept_off_amx(env: str, value: str) -> None:
    """The AVX2-only emulation of docs/performance.md, or a cap below AMX: fp32, and the
    reason names the variable."""
    chosen, why = explain_cpu_precision(AMX, {env: value})
    assert chosen == "32" and f"{env}={value}" in why and "AMX" in why


@pytest.mark.parametrize("value", ["AVX512_CORE_AMX", "avx512_core_amx_fp16", "ALL", "default"])
def test_an_isa_cap_that_allows_amx_keeps_bf16(value: str) -> None:
    assert explain_cpu_precision(AMX, {"ONEDNN_MAX_CPU_ISA": value})[0] == "bf16-mixed"
    assert explain_cpu_precision(AMX, {"ATEN_CPU_CAPABILITY": "avx512"})[0] == "bf16-mixed"


def test_isa_limit_reads_the_environment_given() -> None:
    assert isa_limit({}) is None
    assert isa_limit({"ONEDNN_MAX_CPU_ISA": "AVX2"}) == "ONEDNN_MAX_CPU_ISA=AVX2"
    # AVX512-BF16 is enough for bf16 to be computed (cpu_supports_bf16), not for AMX
    assert isa_limit({"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_BF16"}) is None
    assert isa_limit({"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_BF16"}, amx=True) is not None
    assert isa_limit({"ATEN_CPU_CAPABILITY": "avx2"}) == "ATEN_CPU_CAPABILITY=avx2"


def test_the_emulation_is_read_from_os_environ(monkeypatch) -> None:
    """explain_cpu_precision's default environment is this process's."""
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    chosen, why = explain_cpu_precision(AMX)
    assert chosen == "32" and "ONEDNN_MAX_CPU_ISA=AVX2" in why
    assert not cpu_supports_bf16()


def test_auto_is_fp32_on_a_gpu_that_only_emulates_bf16(monkeypatch) -> None:
    """A V100 or T4 (compute capability 7.x): torch's ``is_bf16_supported()`` says yes by
    default because a bf16 tensor can be made there, but it has no bf16 tensor cores; ``auto``
    keeps fp32 and says why (docs/train.md: bf16 on Ampere or later)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "Tesla V100-SXM2-32GB")
    # what torch answers on such a GPU: yes with emulation, no without
    monkeypatch.setattr(torch.cuda, "is_bf16_supported",
                        lambda including_emulation=True: including_emulation)
    chosen, why = explain_precision("auto", "gpu")
    assert chosen == "32" and "V100" in why and "no native bf16" in why
    # an Ampere GPU: bf16, whatever the CPU's flags
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "NVIDIA A100-SXM4-80GB")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    chosen, why = explain_precision("auto", "gpu")
    assert chosen == "bf16-mixed" and "A100" in why
