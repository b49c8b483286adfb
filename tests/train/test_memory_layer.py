"""The in-memory layer's automatic choice: it counts every training process of the machine
and the job's own memory limit, not only the node's free memory."""

from __future__ import annotations

import pytest

from medimp.data import PreprocessConfig
from medimp.train.datamodule import _available_memory, _cgroup_room, _fits_in_memory


def _write(folder, **files) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name.replace("_", ".", 1)).write_text(text)


def test_a_slurm_job_s_memory_limit_is_the_room(tmp_path) -> None:
    """A SLURM job (cgroup v1 or v2) with --mem 4 GiB on a large node has 4 GiB minus what it
    uses, whatever MemAvailable says; no limit is None."""
    gib = 1 << 30
    v1, v2, free = tmp_path / "v1", tmp_path / "v2", tmp_path / "free"
    _write(v1 / "memory" / "slurm" / "job_7", memory_limit_in_bytes=str(4 * gib),
           memory_usage_in_bytes=str(gib))
    (tmp_path / "v1.cgroup").write_text("5:memory:/slurm/job_7\n4:cpu:/slurm/job_7\n")
    assert _cgroup_room(tmp_path / "v1.cgroup", v1) == 3 * gib
    _write(v2 / "system.slice" / "job_7", memory_max=f"{4 * gib}\n", memory_current=str(gib))
    (tmp_path / "v2.cgroup").write_text("0::/system.slice/job_7\n")
    assert _cgroup_room(tmp_path / "v2.cgroup", v2) == 3 * gib
    _write(free, memory_max="max\n", memory_current="123")
    (tmp_path / "free.cgroup").write_text("0::/\n")
    assert _cgroup_room(tmp_path / "free.cgroup", free) is None
    assert _cgroup_room(tmp_path / "absent", free) is None


def test_every_local_training_process_holds_a_copy(monkeypatch, tiny_config) -> None:
    """srun's 8 tasks on a node (SLURM_NTASKS_PER_NODE, no torchrun LOCAL_WORLD_SIZE) each
    keep their own copy: a cohort that fits once does not fit eight times."""
    room = _available_memory()
    if room == 0:
        pytest.skip("no /proc/meminfo")
    pre = PreprocessConfig(shape=(16, 16, 16))
    per_exam = 3 * 16 ** 3 * 4
    n = int(room / 4 / 2.5 / per_exam)  # one copy: 40% of the allowance; eight: 320%
    cfg = tiny_config("num_workers=0")
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    monkeypatch.delenv("SLURM_NTASKS_PER_NODE", raising=False)
    assert _fits_in_memory(n, 3, pre, cfg)
    monkeypatch.setenv("SLURM_NTASKS_PER_NODE", "8")
    assert not _fits_in_memory(n, 3, pre, cfg)
    monkeypatch.delenv("SLURM_NTASKS_PER_NODE")
    assert not _fits_in_memory(n, 3, pre, tiny_config("num_workers=0", "devices=8"))
