"""Atomic, durable file writing: nothing that was there before is lost or half-written.

Every stage writes through these helpers: data goes to a temporary file (or folder) beside the
target, and is renamed over it only once complete. A crash leaves the old file intact.

Durable: before the rename the file's data is flushed to the disk (``os.fsync``), and after it
the folder's entry (``fsync`` of the directory), so that after a power loss a file that was
reported written holds its data, not zero bytes (a rename alone can reach the disk before the
data it names). ``atomic_dir`` flushes every file of the new folder before moving it in.
``durable=False`` skips the flushes for files that may be lost (counters, caches' statistics).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import json
import os
import re
import shutil
import socket
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

__all__ = [
    "FolderInUseError",
    "atomic_dir",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_text",
    "folder_lock",
    "foreign_entries",
    "fsync_dir",
    "fsync_file",
    "is_own_temporary",
    "output_dir",
    "refuse_foreign_entries",
    "replace_dir",
]


def fsync_file(path: str | os.PathLike[str]) -> None:
    """Flush the data of the file ``path`` to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Flush the entries of the folder ``path`` (a rename, a new file) to the disk. A file
    system that cannot sync a folder (some network and Windows file systems) is left as it is."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(root: Path) -> None:
    """Flush every file and folder under ``root`` (the folder itself last)."""
    for folder, _dirs, files in os.walk(root, topdown=False):
        for name in files:
            p = Path(folder) / name
            if not p.is_symlink():
                fsync_file(p)
        fsync_dir(folder)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], *, durable: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it over ``path``.

    Use for writers that want a file name (``np.save``, ``nib.save``, ``df.to_parquet``...). The
    temporary name keeps the target's suffixes so that format detection by extension works.
    ``durable``: flush the file before the rename and the folder after it (module docstring).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(path.suffixes)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.",
                                   suffix=f".tmp{suffix}")
    except OSError as exc:
        raise _about(exc, path) from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp makes owner-only files; give the result the usual umask-based mode instead
        umask = os.umask(0)
        os.umask(umask)
        if tmp_path.exists():
            tmp_path.chmod(0o666 & ~umask)
            if durable:
                fsync_file(tmp_path)
        tmp_path.replace(path)
        if durable:
            fsync_dir(path.parent)
    except Exception as exc:
        full = _disk_full(path.parent)  # before the partial file goes and frees its space
        tmp_path.unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.errno is not None:
            raise _about(exc, path) from exc
        if full:  # writers such as torch.save report a full disk as a RuntimeError
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path)) from exc
        raise
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def _about(exc: OSError, path: Path) -> OSError:
    """``exc`` naming the target ``path`` instead of our temporary file (or no file at all)."""
    if exc.filename is not None and not Path(os.fsdecode(exc.filename)).name.startswith("."):
        return exc
    return type(exc)(exc.errno, exc.strerror or os.strerror(exc.errno or 0), str(path))


def _disk_full(folder: Path, margin: int = 1 << 20) -> bool:
    """Whether the file system holding ``folder`` has (nearly) no space left for us."""
    try:
        st = os.statvfs(folder)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < margin


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, *,
                       durable: bool = True) -> None:
    """Write ``data`` to ``path`` atomically (and durably unless ``durable=False``)."""
    with atomic_path(path, durable=durable) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike[str], text: str, *, durable: bool = True) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically (and durably unless ``durable=False``)."""
    atomic_write_bytes(path, text.encode("utf-8"), durable=durable)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike[str], overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; on success move it to ``path``.

    If ``path`` exists and is not empty, raises ``FileExistsError`` unless ``overwrite``; with
    ``overwrite`` the old folder is replaced only after the new one is complete.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise FileExistsError(f"{path} exists and is not a folder")
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise FileExistsError(f"{path} is not empty; pass --overwrite to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        # mkdtemp makes an owner-only folder; the result gets the user's usual mode (umask)
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod(0o777 & ~umask)
        yield tmp
        _fsync_tree(tmp)
        replace_dir(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def replace_dir(new: str | os.PathLike[str], path: str | os.PathLike[str]) -> None:
    """Move the complete folder ``new`` to ``path``, replacing what is there (two renames; the
    old folder is deleted only once the new one is in place)."""
    new, path = Path(new), Path(path)
    if path.exists():
        old = path.with_name(f".{path.name}.old-{os.getpid()}")
        shutil.rmtree(old, ignore_errors=True)
        path.rename(old)
        new.rename(path)
        fsync_dir(path.parent)
        shutil.rmtree(old, ignore_errors=True)
    else:
        new.rename(path)
        fsync_dir(path.parent)


class FolderInUseError(FileExistsError):
    """Another process holds the lock of a folder (see :func:`folder_lock`)."""


def _lock_paths(path: Path) -> tuple[Path, Path]:
    """The lock file of a folder lives beside it, so that the folder itself can be swapped."""
    return (path.parent / f".{path.name}.medimp-lock",
            path.parent / f".{path.name}.medimp-lock.json")


@contextlib.contextmanager
def folder_lock(path: str | os.PathLike[str], what: str = "folder",
                error: Callable[[str], Exception] = FolderInUseError) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (a run, evaluation or cache folder) or fail at once.

    The lock is an OS file lock (``filelock``) on a hidden file beside the folder: the operating
    system releases it when the process ends, however it ends, so a killed run never leaves a
    stale lock. Who holds it (pid, host, command, since when) is written next to it, for the
    error message of the process that is refused. Both files are removed when the lock is
    released (a killed process leaves them, harmless: the next one takes the lock over).

    Raises:
        ``error(message)`` (default :class:`FolderInUseError`) naming the folder and the holder.
    """
    from filelock import FileLock, Timeout

    path = Path(path).absolute()
    lock_file, info_file = _lock_paths(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(lock_file, timeout=0)
        lock.acquire()
    except Timeout:
        holder = "another process"
        with contextlib.suppress(OSError, ValueError, TypeError, KeyError):
            info = json.loads(info_file.read_text(encoding="utf-8"))
            holder = (f"process {info['pid']} on {info['host']} ({info['command']}, since "
                      f"{info['since']})")
        raise error(f"{path}: this {what} is in use by {holder}; wait for it to finish or "
                    "choose another folder") from None
    except OSError as exc:
        raise error(f"{path}: cannot create its lock file {lock_file.name} in {path.parent} "
                    f"({exc.strerror or exc}); choose a folder you can write to") from None
    try:
        with contextlib.suppress(OSError):
            atomic_write_text(info_file, json.dumps({
                "pid": os.getpid(), "host": socket.gethostname(),
                "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])[:200],
                "since": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")}))
        yield
    finally:
        with contextlib.suppress(OSError):
            info_file.unlink()
        # removed while still held, so no other process can hold it: one that opened the file
        # meanwhile finds, once it gets the lock, that its inode is gone, and is refused (or
        # retries) instead of holding a lock on a deleted file beside a new one
        with contextlib.suppress(OSError):
            lock_file.unlink()
        lock.release()



# The hidden names our own writers leave in a folder, and nothing else: atomic_path's
# temporaries (".NAME.<8 random>.tmp<suffixes>"), atomic_dir's (".NAME.<8 random>.tmp"),
# replace_dir's swapped-out folder (".NAME.old-PID"), pretrain's replacement run
# (".NAME.overwrite.tmp") and folder_lock's files (".NAME.medimp-lock", "...-lock.json"). A
# user's ".git", ".env" or ".DS_Store" matches none of them and counts as foreign content.
_OWN_TEMPORARY = re.compile(
    r"\..+\.(?:[a-z0-9_]{8}\.tmp(?:\..+)?|old-\d+|overwrite\.tmp|medimp-lock(?:\.json)?)")


def is_own_temporary(name: str) -> bool:
    """True when ``name`` is a temporary or lock file that medimp itself writes (see above)."""
    return _OWN_TEMPORARY.fullmatch(name) is not None


def foreign_entries(path: Path, ours: Iterable[str]) -> list[str]:
    """The names in the folder ``path`` that are neither in ``ours`` nor medimp's own temporary
    or lock files; hidden names (``.git``, ``.env``) count like any other."""
    if not path.is_dir():
        return []
    allowed = set(ours)
    return sorted(e.name for e in path.iterdir()
                  if e.name not in allowed and not is_own_temporary(e.name))


def refuse_foreign_entries(path: Path, ours: Iterable[str], *, what: str,
                           error: Callable[[str], Exception] = FileExistsError) -> None:
    """Refuse to replace ``path`` when it holds anything but ``ours`` (the names a command
    writes there): ``--overwrite`` replaces a command's own output, never the user's files
    (hidden ones included: a ``.git`` folder is the user's)."""
    foreign = foreign_entries(path, ours)
    if foreign:
        shown = ", ".join(foreign[:5]) + (" ..." if len(foreign) > 5 else "")
        raise error(f"{path} is not a {what} (it holds {shown}): --overwrite would delete "
                    "those files; choose another folder or move them away")


@contextlib.contextmanager
def output_dir(path: str | os.PathLike[str], *, overwrite: bool = False, what: str = "folder",
               error: Callable[[str], Exception] = FileExistsError,
               keep: Iterable[str | os.PathLike[str]] = (),
               ours: Iterable[str] | None = None) -> Iterator[Path]:
    """The rule of every command that writes a folder of results (simulate, evaluate, ...).

    ``path`` must be absent or empty unless ``overwrite``; it is locked (:func:`folder_lock`)
    while the results are written into the yielded temporary folder beside it, which replaces
    ``path`` only on success: a failure or an interruption leaves what was there untouched.

    ``keep``: inputs of the command (the cohort, run folders...); ``path`` may not be one of
    them or hold one, since replacing it would delete them.

    ``ours``: the names this command writes into ``path``; when given, ``--overwrite`` replaces
    only a folder that holds nothing else (a folder with the user's own files is refused).

    Raises:
        ``error(message)``: ``path`` is a file, is not empty (without ``overwrite``), holds an
        input, or is in use by another process.
    """
    path = Path(path).absolute()
    for k in keep:
        kept = Path(k).resolve()
        if kept == path.resolve() or path.resolve() in kept.parents:
            raise error(f"{path} holds {k}, an input of this command: writing the {what} "
                        "there would replace it; choose another folder")
    if path.exists() and not path.is_dir():
        raise error(f"{path} exists and is not a folder; give a folder for --out")
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise error(f"{path} is not empty; pass --overwrite to replace it (the old {what} "
                    "is replaced only once the new one is complete) or choose another folder")
    if ours is not None:
        refuse_foreign_entries(path, ours, what=what, error=error)
    with folder_lock(path, what, error=error), atomic_dir(path, overwrite=True) as tmp:
        yield tmp
