"""Where a cohort's preprocessed exams are cached: the cohort's own folder, a folder given
(``cache_dir``), or, for a cohort that cannot be written (a read-only share), the user's cache
folder (docs/data-pipeline.md). ``medimp.data.pipeline.cache`` re-exports these names."""

from __future__ import annotations

import hashlib
import os
import tempfile
import warnings
from pathlib import Path

from medimp.data._errors import CacheDirError
from medimp.data.cohort._values import CohortWarning
from medimp.errors import describe_os_error

__all__ = ["USER_CACHE_ENV", "cache_write_problem", "default_cache_dir", "resolve_cache_dir",
           "user_cache_dir"]


def default_cache_dir(cohort_root: str | os.PathLike[str]) -> Path:
    """Where a cohort's preprocessed exams are cached unless a folder is given."""
    return Path(cohort_root) / ".medimp_cache"


#: The user cache folder of cohorts that cannot hold their own cache (a read-only share):
#: ``$MEDIMP_CACHE_DIR``, else ``$XDG_CACHE_HOME/medimp``, else ``~/.cache/medimp``.
USER_CACHE_ENV = "MEDIMP_CACHE_DIR"

_SET_IT = ("choose a writable folder with the cache_dir setting (pretrain: --set cache_dir=DIR; "
           "embed: --cache DIR)")


def user_cache_dir(cohort_root: str | os.PathLike[str]) -> Path:
    """The cache folder of a cohort in the user's cache folder, one per cohort path."""
    base = os.environ.get(USER_CACHE_ENV)
    if not base:
        base = str(Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "medimp")
    root = Path(cohort_root).resolve()
    digest = hashlib.sha256(str(root).encode()).hexdigest()[:12]
    return Path(base).expanduser() / f"{root.name}-{digest}"


def cache_write_problem(root: str | os.PathLike[str]) -> str | None:
    """None when ``root`` can hold a cache (it is created if absent), else why not."""
    try:
        Path(root).mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=root, prefix=".medimp-write-test-")
        os.close(fd)
        Path(probe).unlink()
    except OSError as exc:
        return describe_os_error(exc)
    return None


def resolve_cache_dir(cohort_root: str | os.PathLike[str],
                      cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The cache folder a run uses: ``cache_dir``, else the cohort's own, else the user's.

    A cohort on a read-only share cannot hold ``<cohort>/.medimp_cache``: its exams are then
    cached in :func:`user_cache_dir` and a warning says where. A ``cache_dir`` that cannot be
    written is an error naming it and the setting (never the images).

    Raises:
        CacheDirError: ``cache_dir`` (or, without it, both the cohort's and the user's cache
            folder) cannot be written.
    """
    if cache_dir is not None:
        why = cache_write_problem(cache_dir)
        if why is not None:
            raise CacheDirError(f"the preprocessing cache folder cannot be written ({why})",
                                file=cache_dir, fix=_SET_IT)
        return Path(cache_dir)
    own = default_cache_dir(cohort_root)
    why = cache_write_problem(own)
    if why is None:
        return own
    user = user_cache_dir(cohort_root)
    why_user = cache_write_problem(user)
    if why_user is not None:
        raise CacheDirError(
            f"the preprocessing cache can be written neither in the cohort ({why}) nor in the "
            f"user cache folder {user} ({why_user})", file=own,
            fix=f"{_SET_IT}, or set ${USER_CACHE_ENV}")
    warnings.warn(f"{own} cannot be written ({why}): preprocessed exams are cached in {user} "
                  f"instead (the cache_dir setting or ${USER_CACHE_ENV} chooses another folder)",
                  CohortWarning, stacklevel=3)
    return user
