"""On-disk cache of preprocessed exams: computed once, verified on every read.

Layout of a cache folder (default ``<cohort>/.medimp_cache``)::

    medimp-cache.json        marker + format version (``clear`` refuses folders without it)
    CACHEDIR.TAG             tells backup tools to skip the folder
    entries/ab/<key>.safetensors
    hashes.json              memo of source-file hashes: path -> (size:mtime:inode:ctime, sha256)
    stats/<host>-<pid>-<id>.json  hit / miss / rebuild counters of each process and cache object

An entry's key is the SHA-256 of canonical JSON holding the cache format, the preprocessing
parameters and, per phase, the SHA-256 of the source file's bytes (of every file, in sorted order,
for a DICOM series folder). Editing an image or changing a parameter therefore gives a new key and
a recomputation; moving the cohort folder does not.

Entries are safetensors files (never pickles) whose metadata repeats the key and a CRC-32 of the
image bytes. A truncated, corrupt or mismatched entry is detected on read, reported with a
``CacheWarning`` and rebuilt. All files are written atomically (``medimp._io``).

Source files are hashed once per (path, size, mtime, inode, ctime): in memory within a process,
and in ``hashes.json`` across processes, so an epoch over a cached cohort only ``stat``s the
sources; an in-place edit that restores size and mtime still changes the ctime.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import multiprocessing.util
import os
import shutil
import socket
import struct
import time
import warnings
import zlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import safetensors.numpy

from medimp._io import atomic_write_bytes, atomic_write_text
from medimp.data.pipeline._hashing import content_hash
from medimp.data.pipeline.cache_dir import (  # the cache folder of a cohort; re-exported here
    USER_CACHE_ENV,
    cache_write_problem,
    default_cache_dir,
    resolve_cache_dir,
    user_cache_dir,
)

__all__ = [
    "CACHE_FORMAT",
    "USER_CACHE_ENV",
    "CacheInfo",
    "CacheWarning",
    "PreprocessCache",
    "cache_write_problem",
    "content_hash",
    "default_cache_dir",
    "resolve_cache_dir",
    "user_cache_dir",
]

CACHE_FORMAT = 1
_MARKER = "medimp-cache.json"
_FLUSH_EVERY_S = 2.0
_TAG = (
    "Signature: 8a477f597d28d172789f06886806bc55\n"
    "# This folder is a cache of preprocessed images made by medimp; it can be deleted.\n"
)


_COUNTERS = ("hits", "misses", "rebuilt")


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


class CacheWarning(UserWarning):
    """A cache entry was unreadable, corrupt or stale and has been rebuilt."""


# ---------------------------------------------------------------- entries


@dataclass
class CacheInfo:
    """What a cache folder holds and how it has been used."""

    path: str
    entries: int
    bytes: int
    hits: int
    misses: int
    rebuilt: int
    hashed_sources: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _read_safetensors_header(data: bytes) -> dict[str, Any]:
    if len(data) < 8:
        raise ValueError("file shorter than a safetensors header")
    (n,) = struct.unpack("<Q", data[:8])
    if n > len(data) - 8:
        raise ValueError("header length beyond end of file (truncated)")
    return json.loads(data[8 : 8 + n])


class PreprocessCache:
    """A folder of preprocessed exams keyed by source content and preprocessing parameters.

    Args:
        root: the cache folder (created on first write).
        verify: check every entry's CRC-32 on read (cheap; detects bit rot and truncation).
        remember_keys: compute each exam's key once for the life of this object (one run),
            not at every read: a DICOM series folder is then walked and ``stat``-ed once per
            run instead of once per item per epoch. Still content-sensitive from one run (one
            object) to the next; a file edited while a run reads it is seen by the next run.

    The object is picklable and safe to share with DataLoader workers: counters are kept per
    process and written to ``stats/`` at most every 2 s, on :meth:`flush` and at exit.
    """

    def __init__(self, root: str | os.PathLike[str], verify: bool = True,
                 remember_keys: bool = False) -> None:
        self.root = Path(root)
        self.verify = verify
        self.remember_keys = remember_keys
        self._keys: dict[str, str] = {}
        self._reset_process_state()

    # -- process-local state (counters, hash index) -------------------------------------
    def _reset_process_state(self) -> None:
        self._pid = os.getpid()
        self._stats_name = f"{socket.gethostname()}-{self._pid}-{os.urandom(4).hex()}.json"
        self.hits = 0
        self.misses = 0
        self.rebuilt = 0
        self._index: dict[str, list[str]] | None = None
        self._index_dirty = False
        self._stats_dirty = False
        self._last_flush = 0.0
        self._finalizer: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {"root": self.root, "verify": self.verify, "remember_keys": self.remember_keys,
                "keys": dict(self._keys)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.root = state["root"]
        self.verify = state["verify"]
        self.remember_keys = state.get("remember_keys", False)
        self._keys = dict(state.get("keys", {}))
        self._reset_process_state()

    def _check_process(self) -> None:
        if os.getpid() != self._pid:  # a forked worker: start its own counters
            self._reset_process_state()
        if self._finalizer is None:
            # runs at interpreter exit, also in multiprocessing (DataLoader) workers
            self._finalizer = multiprocessing.util.Finalize(self, self.flush, exitpriority=10)

    def _hash_index(self) -> dict[str, list[str]]:
        if self._index is None:
            self._index = {}
            with contextlib.suppress(OSError, ValueError):
                raw = json.loads((self.root / "hashes.json").read_text(encoding="utf-8"))
                if isinstance(raw, dict):
                    self._index = {
                        k: v for k, v in raw.items() if isinstance(v, list) and len(v) == 2
                    }
        return self._index

    def flush(self) -> None:
        """Write this process's counters and new source hashes to the cache folder."""
        if os.getpid() != self._pid or not (self.root / _MARKER).is_file():
            return
        with contextlib.suppress(OSError):
            if self._index_dirty and self._index is not None:
                # read-merge-write under the cache's lock: processes that share the cache (DDP
                # ranks, DataLoader workers, two runs) never drop each other's hashes
                with self.write_lock():
                    merged = {}
                    with contextlib.suppress(OSError, ValueError):
                        merged = json.loads(
                            (self.root / "hashes.json").read_text(encoding="utf-8"))
                    merged.update(self._index)
                    atomic_write_text(self.root / "hashes.json",
                                      json.dumps(merged, sort_keys=True))
                self._index_dirty = False
            if self._stats_dirty:
                stats = {
                    "hits": self.hits,
                    "misses": self.misses,
                    "rebuilt": self.rebuilt,
                    "updated": time.time(),
                }
                atomic_write_text(self.root / "stats" / self._stats_name, json.dumps(stats),
                                  durable=False)
                self._stats_dirty = False
        self._last_flush = time.monotonic()

    def write_lock(self, timeout: float = 120.0) -> Any:
        """The cache folder's file lock (``filelock``), held while shared files are rewritten
        or the cache is cleared; entries need none (each is written atomically)."""
        from filelock import FileLock

        return FileLock(self.root / ".lock", timeout=timeout)

    def _maybe_flush(self, force: bool = False) -> None:
        if force or time.monotonic() - self._last_flush > _FLUSH_EVERY_S:
            self.flush()

    # -- keys ----------------------------------------------------------------------------
    def key(self, sources: Sequence[tuple[Any, ...]], params_json: str) -> str:
        """The entry key of an exam: its phases' source hashes + the parameters' JSON.

        ``sources`` holds ``(phase, path or None, *extra)`` per phase; ``extra`` (e.g. the
        DICOM series UID read from that folder) enters the key as given.
        """
        self._check_process()
        memo = ""
        if self.remember_keys:
            memo = json.dumps([[str(x) for x in s] for s in sources]) + params_json
            hit = self._keys.get(memo)
            if hit is not None:
                return hit
        index = self._hash_index()
        before = len(index)
        hashes = [
            [name, None if p is None else content_hash(p, index), *extra]
            for name, p, *extra in sources
        ]
        if len(index) != before:
            self._index_dirty = True
        doc = {"format": CACHE_FORMAT, "params": json.loads(params_json), "sources": hashes}
        key = hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()
        if self.remember_keys:
            self._keys[memo] = key
        return key

    def entry_path(self, key: str) -> Path:
        return self.root / "entries" / key[:2] / f"{key}.safetensors"

    # -- read / write --------------------------------------------------------------------
    def _ensure_root(self) -> None:
        marker = self.root / _MARKER
        if not marker.exists():
            self.root.mkdir(parents=True, exist_ok=True)
            atomic_write_text(marker, json.dumps({"format": CACHE_FORMAT, "tool": "medimp"}))
            atomic_write_text(self.root / "CACHEDIR.TAG", _TAG)

    def load(self, key: str) -> tuple[np.ndarray, np.ndarray] | None:
        """Read a verified entry, ``None`` if absent; a bad entry is removed with a warning."""
        path = self.entry_path(key)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            self._discard(path, f"unreadable ({exc})")
            return None
        try:
            meta = _read_safetensors_header(data).get("__metadata__") or {}
            arrays = safetensors.numpy.load(data)
            image, mask = arrays["image"], arrays["phase_mask"].astype(bool)
            if meta.get("key") != key or int(meta.get("format", -1)) != CACHE_FORMAT:
                raise ValueError("stale entry (key or format does not match)")
            if image.dtype != np.float32 or image.ndim != 4 or mask.shape != (image.shape[0],):
                raise ValueError(f"unexpected arrays image{image.shape} mask{mask.shape}")
            if self.verify and int(meta.get("crc32", -1)) != zlib.crc32(image.tobytes()):
                raise ValueError("checksum mismatch (corrupt data)")
        except Exception as exc:  # safetensors raises its own error types on corrupt bytes
            self._discard(path, str(exc))
            return None
        return image, mask

    def _discard(self, path: Path, why: str) -> None:
        warnings.warn(
            f"cache entry {path} is bad ({why}); removing it and recomputing the exam",
            CacheWarning,
            stacklevel=3,
        )
        with contextlib.suppress(OSError):
            path.unlink()
        self.rebuilt += 1
        self._stats_dirty = True

    def store(self, key: str, image: np.ndarray, mask: np.ndarray, where: str = "") -> Path:
        """Write an entry atomically and return its path."""
        self._ensure_root()
        image = np.ascontiguousarray(image, dtype=np.float32)
        meta = {
            "format": str(CACHE_FORMAT),
            "key": key,
            "crc32": str(zlib.crc32(image.tobytes())),
            "where": where,
        }
        data = safetensors.numpy.save(
            {"image": image, "phase_mask": np.asarray(mask, dtype=np.uint8)}, metadata=meta
        )
        path = self.entry_path(key)
        # not flushed to disk (fsync): an entry lost or cut by a power loss fails its CRC and is
        # recomputed, and flushing every entry made filling the cache ~30% slower
        atomic_write_bytes(path, data, durable=False)
        return path

    def get_or_compute(
        self,
        sources: Sequence[tuple[Any, ...]],
        params_json: str,
        compute: Callable[[], tuple[np.ndarray, np.ndarray]],
        where: str = "",
    ) -> tuple[np.ndarray, np.ndarray]:
        """Return the cached exam for ``sources`` + parameters, computing and storing it once."""
        self._check_process()
        key = self.key(sources, params_json)
        hit = self.load(key)
        if hit is not None:
            self.hits += 1
            self._stats_dirty = True
            self._maybe_flush()
            return hit
        image, mask = compute()
        self.store(key, image, mask, where=where)
        self.misses += 1
        self._stats_dirty = True
        self._maybe_flush()
        return np.ascontiguousarray(image, dtype=np.float32), np.asarray(mask, dtype=bool)

    # -- maintenance ---------------------------------------------------------------------
    def info(self) -> CacheInfo:
        """Count the entries and bytes, and sum the counters of every process so far."""
        self.flush()
        files = list((self.root / "entries").rglob("*.safetensors")) if self.root.is_dir() else []
        size = sum(f.stat().st_size for f in files)
        totals = self._compact_stats() if self.root.is_dir() else dict.fromkeys(_COUNTERS, 0)
        hashed = 0
        with contextlib.suppress(OSError, ValueError):
            hashed = len(json.loads((self.root / "hashes.json").read_text(encoding="utf-8")))
        return CacheInfo(
            path=str(self.root), entries=len(files), bytes=size, hashed_sources=hashed, **totals
        )

    def _compact_stats(self) -> dict[str, int]:
        """Sum every process's counters; fold those of finished processes into ``total``.

        Each process (and DataLoader worker) writes its own small file; without folding, a
        long training run would leave one per worker per epoch.
        """
        stats = self.root / "stats"
        totals = dict.fromkeys(_COUNTERS, 0)
        folded = dict.fromkeys(_COUNTERS, 0)
        done: list[Path] = []
        host = socket.gethostname()
        for f in sorted(stats.glob("*.json")):
            try:
                rec = json.loads(f.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            counts = {k: int(rec.get(k, 0)) for k in _COUNTERS}
            for k in _COUNTERS:
                totals[k] += counts[k]
            if f.name == "total.json":
                continue
            owner_host, _, rest = f.stem.rpartition("-")[0].rpartition("-")
            if owner_host == host and rest.isdigit() and not _pid_alive(int(rest)):
                done.append(f)
                for k in _COUNTERS:
                    folded[k] += counts[k]
        if done:
            with contextlib.suppress(OSError, ValueError):
                total_path = stats / "total.json"
                total = dict.fromkeys(_COUNTERS, 0)
                if total_path.is_file():
                    total.update(json.loads(total_path.read_text(encoding="utf-8")))
                atomic_write_text(
                    total_path, json.dumps({k: int(total[k]) + folded[k] for k in _COUNTERS})
                )
                for f in done:
                    f.unlink(missing_ok=True)
        return totals

    def is_cache_dir(self) -> bool:
        """True if ``root`` holds medimp's marker file (so it is safe to clear)."""
        return (self.root / _MARKER).is_file()

    def clear(self) -> int:
        """Delete the whole cache folder; return the number of entries removed.

        Raises:
            ValueError: ``root`` exists but is not a medimp cache (no marker file), so that a
                mistyped path never deletes a user's data.
        """
        if not self.root.exists():
            return 0
        if not self.is_cache_dir():
            raise ValueError(
                f"{self.root} is not a medimp cache folder (no {_MARKER}); nothing was deleted"
            )
        n = len(list((self.root / "entries").rglob("*.safetensors")))
        # rename first so that a half-deleted folder is never mistaken for a cache
        trash = self.root.with_name(f".{self.root.name}.deleting-{os.getpid()}")
        with self.write_lock():
            self.root.rename(trash)
        shutil.rmtree(trash, ignore_errors=True)
        self._reset_process_state()
        return n
