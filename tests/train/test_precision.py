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
