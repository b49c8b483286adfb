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
