"""The run folder of ``pretrain``: what may be written where, and by whom.

* ``--out`` must be new, empty, or a medimp run folder: a folder holding the user's own files is
  refused, never written into.
* One process at a time: the folder is locked (``medimp._io.folder_lock``) for the whole run; a
  second ``pretrain`` on it fails at once, naming the holder.
* ``--overwrite`` builds the new run in a sibling folder and swaps it in only once it has
  finished: a failure (a bad image in epoch 1, an interruption) leaves the old run as it was.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from medimp._io import atomic_write_text, folder_lock, foreign_entries, replace_dir
from medimp.train.config import TrainError, TrainingInterrupted

__all__ = ["RUN_MARKER", "RunFolder", "is_global_zero", "run_folder"]

RUN_MARKER = "medimp-run.json"
# what a run folder may hold (see docs/train.md); anything else is the user's
_RUN_ENTRIES = {RUN_MARKER, "config.yaml", "history.csv", "model.json", "model.safetensors",
                "checkpoints", "logs", "mlruns", "lightning_logs"}


def is_global_zero() -> bool:
    """True in the process that owns the run folder (rank 0 of a distributed launch)."""
    for var in ("RANK", "SLURM_PROCID"):
        if os.environ.get(var):
            return int(os.environ[var]) == 0
    # Lightning's subprocess launcher sets only LOCAL_RANK and NODE_RANK in the processes it
    # starts (they run this function again before the process group exists)
    return int(os.environ.get("LOCAL_RANK", "0") or 0) == 0 and \
        int(os.environ.get("NODE_RANK", "0") or 0) == 0


@dataclass(frozen=True)
class RunFolder:
    """Where a run ends up (``path``) and where it is written meanwhile (``work``)."""

    path: Path
    work: Path

    @property
    def swaps(self) -> bool:
        """True when a finished run is being replaced: ``work`` is then a sibling folder."""
        return self.work != self.path

    def create(self) -> None:
        """Create ``work`` (once every check has passed) and mark it as a medimp run."""
        if self.swaps and is_global_zero():
            # left by a replacement that was killed: ours now (we hold the lock)
            shutil.rmtree(self.work, ignore_errors=True)
        self.work.mkdir(parents=True, exist_ok=True)
        if is_global_zero() and not (self.work / RUN_MARKER).is_file():
            atomic_write_text(self.work / RUN_MARKER, json.dumps({
                "tool": "medimp", "created": _dt.datetime.now(_dt.UTC).isoformat(
                    timespec="seconds")}) + "\n")


def _entries(path: Path) -> list[str]:
    """Every name in ``path`` but medimp's own temporary and lock files: a user's ``.git`` or
    ``.env`` counts (a folder holding them is refused, never replaced)."""
    return foreign_entries(path, ())


def _holds_checkpoint_or_model(path: Path) -> bool:
    return (path / "model.json").is_file() or (path / "checkpoints" / "last.ckpt").is_file()


def check_out_dir(path: Path, *, resume: bool, overwrite: bool) -> bool:
    """Refuse an ``--out`` that is not ours to write; True when a finished run is replaced."""
    if path.exists() and not path.is_dir():
        raise TrainError(f"{path} exists and is not a folder; give a folder for --out")
    names = _entries(path)
    if resume or not names:
        return False
    is_run = (path / RUN_MARKER).is_file() or _holds_checkpoint_or_model(path)
    foreign = [n for n in names if n not in _RUN_ENTRIES]
    if not is_run or foreign:
        shown = ", ".join((foreign or names)[:5]) + (" ..." if len(foreign or names) > 5 else "")
        raise TrainError(f"{path} is not empty and is not a medimp run folder (it holds "
                         f"{shown}); give a new or empty folder for --out, or move those files "
                         "away")
    if not _holds_checkpoint_or_model(path):
        return False  # a run stopped before its first checkpoint: nothing to keep, restart here
    if not overwrite:
        raise TrainError(f"{path} already holds a run; pass --resume to continue it, "
                         "--overwrite to start again, or choose another folder")
    return True


@contextlib.contextmanager
def run_folder(out_dir: str | os.PathLike[str], *, resume: bool,
               overwrite: bool) -> Iterator[RunFolder]:
    """Check and lock ``out_dir`` for one ``pretrain`` call; swap a replacement in on success.

    Yields a :class:`RunFolder`: call ``.create()`` once every check has passed, then write
    everything into ``.work``. Only the global-zero process
    checks, locks and swaps; the other ranks of a distributed launch write into the same
    ``.work`` (its name is fixed, not random, so that every rank finds it).
    """
    path = Path(out_dir)
    if not is_global_zero():
        replacing = _holds_checkpoint_or_model(path) and overwrite and not resume
        yield RunFolder(path, _work_dir(path) if replacing else path)
        return
    with folder_lock(path, "run folder", error=TrainError):
        replacing = check_out_dir(path, resume=resume, overwrite=overwrite)
        folder = RunFolder(path, _work_dir(path) if replacing else path)
        try:
            yield folder
        except TrainingInterrupted as exc:
            if not folder.swaps:
                raise
            shutil.rmtree(folder.work, ignore_errors=True)
            when = str(exc).split(";")[0]  # "interrupted after epoch N" (not resumable here)
            raise TrainingInterrupted(
                f"{when}; the replacement run was discarded and {path} still holds the "
                "previous run, unchanged; pass --overwrite again to replace it") from None
        except BaseException:
            if folder.swaps:
                shutil.rmtree(folder.work, ignore_errors=True)
            raise
        if folder.swaps and folder.work.is_dir():
            replace_dir(folder.work, path)


def _work_dir(path: Path) -> Path:
    return path.parent / f".{path.name}.overwrite.tmp"
