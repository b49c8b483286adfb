"""Real file-system faults for tests: a read-only view of a folder, a tiny (full) disk, and a
process run as an unprivileged user. Each skips the test where the machine does not allow it
(mounting needs root with CAP_SYS_ADMIN)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest


def _mount(*args: str) -> None:
    res = subprocess.run(["mount", *args], check=False, capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount here ({res.stderr.strip() or res.returncode})")


@contextlib.contextmanager
def read_only_view(src: Path, at: Path) -> Iterator[Path]:
    """``src`` seen read-only at ``at`` (a read-only bind mount)."""
    if shutil.which("mount") is None or os.geteuid() != 0:
        pytest.skip("read-only bind mounts need root")
    at.mkdir(parents=True)
    _mount("--bind", str(src), str(at))
    try:
        _mount("-o", "remount,ro,bind", str(at))
        yield at
    finally:
        subprocess.run(["umount", "-l", str(at)], check=False)  # lazy: open logs


@contextlib.contextmanager
def tiny_disk(at: Path, size: str = "300k") -> Iterator[Path]:
    """A file system of ``size`` bytes at ``at`` (tmpfs), to fill up."""
    if shutil.which("mount") is None or os.geteuid() != 0:
        pytest.skip("a tiny file system needs root to mount")
    at.mkdir(parents=True)
    _mount("-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(at))
    try:
        yield at
    finally:
        subprocess.run(["umount", "-l", str(at)], check=False)  # lazy: open logs


def run_cli_unprivileged(args: list[str], home: Path) -> subprocess.CompletedProcess:
    """``medimp ARGS`` in a new process as an unprivileged user (root reads every file, so a
    permission test run by root drops to ``nobody``)."""
    cmd = [sys.executable, "-m", "medimp.cli.main", *args]
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("no setpriv to drop root privileges")
        cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--", *cmd]
    env = {**os.environ, "HOME": str(home), "MPLCONFIGDIR": str(home)}
    return subprocess.run(cmd, check=False, capture_output=True, text=True, env=env,
                          timeout=300)
