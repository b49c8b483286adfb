"""The one error root of medimp, and one-line descriptions of the errors users cause.

Every stage's errors inherit :class:`MedimpError` (a :class:`ValueError`, so callers that only
know "bad input" still catch them). The command line catches it once, in ``medimp.cli.main``,
and prints its message as one line with exit code 1 (docs/cli.md); a traceback means a bug in
medimp.

This module imports no stage, so every stage may import it.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["MedimpError", "describe_os_error", "validation_problems"]


class MedimpError(ValueError):
    """Base of every medimp error: input that medimp cannot use, with a message that names the
    file, the patient and the fix."""


def _name(path: object) -> str | None:
    if path is None or path == "":
        return None
    return os.fsdecode(path) if isinstance(path, bytes | os.PathLike) else str(path)


def describe_os_error(exc: OSError) -> str:
    """One line that says what went wrong with which file and what to do.

    Permission problems say so and name the file; a full disk says where; a missing file names
    its path. Works for any ``OSError`` (also those raised with a bare message).
    """
    file = _name(exc.filename)
    other = _name(exc.filename2)
    what = f"{file}" + (f" -> {other}" if other else "") if file else None
    code = exc.errno
    reason = exc.strerror or (str(exc.args[0]) if exc.args else type(exc).__name__)
    if isinstance(exc, PermissionError) or code in (errno.EACCES, errno.EPERM):
        where = what or "a file or folder"
        return (f"{where}: permission denied; this is a permission problem: give your user "
                "read/write access to it (or choose another folder)")
    if code == errno.ENOSPC:
        where = f" while writing {what}" if what else ""
        return (f"no space left on device{where}: the disk is full; free space there or "
                "choose a folder on another disk")
    if code == errno.EDQUOT:
        where = f" while writing {what}" if what else ""
        return f"disk quota exceeded{where}: free space or choose a folder on another disk"
    if code == errno.EROFS:
        where = what or "the target"
        return f"{where}: read-only file system; choose a folder you may write"
    if isinstance(exc, FileNotFoundError) or code == errno.ENOENT:
        if what is None:
            return reason if exc.strerror is None else f"file not found: {reason}"
        return f"{what}: no such file or folder; check the path"
    if isinstance(exc, NotADirectoryError) or code == errno.ENOTDIR:
        if what is None:
            return reason
        return f"{what}: a part of this path is a file, not a folder; check the path"
    if isinstance(exc, IsADirectoryError) or code == errno.EISDIR:
        if what is None:
            return reason
        return f"{what}: is a folder, but a file was expected"
    if isinstance(exc, FileExistsError) and what is None:
        return reason
    if what is None:
        return reason
    return f"{what}: {reason}"


def validation_problems(errors: Iterable[Mapping[str, Any]]) -> list[str]:
    """``loc: message`` per problem of a pydantic ``ValidationError.errors()``, without URLs.

    >>> validation_problems([{"loc": ("variables", 0, "bins"), "msg": "Field required"}])
    ['variables.0.bins: Field required']
    """
    out = []
    for err in errors:
        loc = ".".join(str(x) for x in err.get("loc", ())) or "(top level)"
        msg = str(err.get("msg", ""))
        msg = msg.removeprefix("Value error, ")
        out.append(f"{loc}: {msg}")
    return out
