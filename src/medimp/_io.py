"""Atomic file writing: nothing that was there before is lost or half-written.

Every stage writes through these helpers: data goes to a temporary file (or folder) beside the
target, and is renamed over it only once complete. A crash leaves the old file intact.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_dir", "atomic_path", "atomic_write_bytes", "atomic_write_text"]


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it over ``path``.

    Use for writers that want a file name (``np.save``, ``nib.save``, ``df.to_parquet``...). The
    temporary name keeps the target's suffixes so that format detection by extension works.
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
        tmp_path.replace(path)
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


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


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
        yield tmp
        if path.exists():
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            path.rename(old)
            tmp.rename(path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
