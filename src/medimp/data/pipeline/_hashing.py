"""Content hashes of source images for the preprocessing cache's keys
(``medimp.data.pipeline.cache`` re-exports :func:`content_hash`)."""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

__all__ = ["content_hash"]


_memo: dict[tuple[str, str], str] = {}
_memo_lock = threading.Lock()


def _signature(path: Path) -> str:
    """Cheap fingerprint of a file or folder, no content read.

    Size, mtime, inode and ctime: an in-place edit that restores size and mtime (``touch -r``,
    ``os.utime``, a tool that preserves timestamps) still moves the ctime, which user code
    cannot set, so the file is hashed again.
    """
    if path.is_dir():
        h = hashlib.sha1()
        for f in sorted(p for p in path.rglob("*") if p.is_file()):
            st = f.stat()
            h.update(f"{f.relative_to(path).as_posix()}:{st.st_size}:{st.st_mtime_ns}:"
                     f"{st.st_ino}:{st.st_ctime_ns}\n".encode())
        return "dir:" + h.hexdigest()
    st = path.stat()
    return f"file:{st.st_size}:{st.st_mtime_ns}:{st.st_ino}:{st.st_ctime_ns}"


def _sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        if path.is_dir():
            h.update(f.relative_to(path).as_posix().encode() + b"\0")
        with f.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def content_hash(path: str | os.PathLike[str], index: dict[str, list[str]] | None = None) -> str:
    """SHA-256 of a file's bytes, or of a folder's files (names and bytes, sorted).

    Memoised by (path, size, mtime, inode, ctime) in this process, and in ``index`` when one is
    given (the cache's ``hashes.json``): unchanged files are not read again, and an edit that
    keeps size and mtime is not served stale.
    """
    p = Path(path).resolve()
    sig = _signature(p)
    key = (str(p), sig)
    with _memo_lock:
        hit = _memo.get(key)
    if hit is not None:
        return hit
    if index is not None:
        rec = index.get(str(p))
        if rec is not None and rec[0] == sig:
            with _memo_lock:
                _memo[key] = rec[1]
            return rec[1]
    digest = _sha256_of(p)
    with _memo_lock:
        _memo[key] = digest
    if index is not None:
        index[str(p)] = [sig, digest]
    return digest
