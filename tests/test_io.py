"""medimp._io: which hidden names are medimp's own, and the foreign-files rule of --overwrite."""

from __future__ import annotations

from pathlib import Path

import pytest

from medimp._io import (
    atomic_dir,
    atomic_path,
    folder_lock,
    foreign_entries,
    is_own_temporary,
    refuse_foreign_entries,
)


def test_own_temporaries_are_exactly_what_our_writers_leave(tmp_path: Path) -> None:
    seen = []
    with atomic_path(tmp_path / "model.nii.gz") as tmp:
        seen.append(tmp.name)
        tmp.write_bytes(b"x")
    with atomic_dir(tmp_path / "eval") as tmp:
        seen.append(tmp.name)
    with folder_lock(tmp_path / "run"):
        seen += [p.name for p in tmp_path.iterdir() if "lock" in p.name]
    seen += [".run.overwrite.tmp", ".run.old-4242"]
    assert len(seen) == 6 and all(is_own_temporary(n) for n in seen), seen
    for user in (".git", ".env", ".DS_Store", ".gitignore", ".venv", ".cache", "notes.txt",
                 ".medimp-lock", ".tmp"):
        assert not is_own_temporary(user), user


def test_hidden_user_files_are_foreign(tmp_path: Path) -> None:
    (tmp_path / ".git").mkdir()
    (tmp_path / ".env").write_text("x")
    (tmp_path / "metrics.json").write_text("{}")
    (tmp_path / ".metrics.ab12cd_3.tmp.json").write_text("half")
    (tmp_path / ".eval.medimp-lock").write_text("")
    assert foreign_entries(tmp_path, ["metrics.json"]) == [".env", ".git"]
    with pytest.raises(FileExistsError, match=r"\(it holds \.env, \.git\): --overwrite"):
        refuse_foreign_entries(tmp_path, ["metrics.json"], what="evaluation folder")
    (tmp_path / ".git").rmdir()
    (tmp_path / ".env").unlink()
    refuse_foreign_entries(tmp_path, ["metrics.json"], what="evaluation folder")


def test_lock_files_are_removed_on_release(tmp_path: Path) -> None:
    """Nothing is left beside a folder once its lock is released; while held, a second taker is
    refused at once and the lock files stay."""
    from medimp._io import FolderInUseError, output_dir

    run = tmp_path / "run"
    with folder_lock(run):
        assert sorted(p.name for p in tmp_path.iterdir()) == [".run.medimp-lock",
                                                              ".run.medimp-lock.json"]
        with pytest.raises(FolderInUseError, match="in use by process"), folder_lock(run):
            pass
        assert (tmp_path / ".run.medimp-lock").is_file()
    assert list(tmp_path.iterdir()) == []
    with folder_lock(run):  # taken again after release
        pass
    with output_dir(tmp_path / "results", what="evaluation folder") as tmp:
        (tmp / "metrics.json").write_text("{}")
    assert [p.name for p in tmp_path.iterdir()] == ["results"]
    with pytest.raises(RuntimeError), output_dir(tmp_path / "results", overwrite=True) as tmp:
        raise RuntimeError  # a failure also releases and removes the lock
    assert [p.name for p in tmp_path.iterdir()] == ["results"]


def _recording_fsync(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int, bool]]:
    """Record (inode, size, is-folder) of every ``os.fsync`` the OS is asked for, then sync."""
    import os
    import stat

    calls: list[tuple[int, int, bool]] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        st = os.fstat(fd)
        calls.append((st.st_ino, st.st_size, stat.S_ISDIR(st.st_mode)))
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return calls


def test_atomic_writes_flush_the_file_and_its_folder(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from medimp._io import atomic_write_bytes

    calls = _recording_fsync(monkeypatch)
    target = tmp_path / "sub" / "model.json"
    atomic_write_bytes(target, b"x" * 1000)
    # the file was flushed complete (1000 bytes) under the inode that now holds the name, and
    # the folder after the rename
    assert (target.stat().st_ino, 1000, False) in calls
    assert any(ino == target.parent.stat().st_ino and is_dir for ino, _, is_dir in calls)
    calls.clear()
    atomic_write_bytes(tmp_path / "stats.json", b"{}", durable=False)
    assert calls == []


def test_atomic_dir_flushes_every_file_before_moving_in(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:

    calls = _recording_fsync(monkeypatch)
    out = tmp_path / "run"
    with atomic_dir(out) as tmp:
        (tmp / "a").mkdir()
        (tmp / "a" / "weights.bin").write_bytes(b"w" * 64)  # written without our helpers
        (tmp / "notes.txt").write_text("hello")
    for f, size in ((out / "a" / "weights.bin", 64), (out / "notes.txt", 5)):
        assert (f.stat().st_ino, size, False) in calls
    dirs = {ino for ino, _, is_dir in calls if is_dir}
    assert {out.stat().st_ino, (out / "a").stat().st_ino, tmp_path.stat().st_ino} <= dirs


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_output_folders_follow_the_users_umask(tmp_path: Path, umask: int) -> None:
    """A results folder (eval/, a cohort) gets the mode of any folder the user makes, not the
    owner-only mode of a temporary folder."""
    import os

    from medimp._io import output_dir

    old = os.umask(umask)
    try:
        with output_dir(tmp_path / "eval") as tmp:
            (tmp / "metrics.json").write_text("{}")
    finally:
        os.umask(old)
    assert (tmp_path / "eval").stat().st_mode & 0o777 == 0o777 & ~umask
