"""No source file of medimp is above 450 lines: a module that grows past it is split by role
(as ``medimp.study`` into schema, defaults, files and errors)."""

from __future__ import annotations

from pathlib import Path

import medimp

SRC = Path(medimp.__file__).resolve().parent
MAX_LINES = 450


def test_no_source_file_above_the_limit() -> None:
    sizes = {p.relative_to(SRC.parent).as_posix(): len(p.read_text(encoding="utf-8").splitlines())
             for p in SRC.rglob("*.py")}
    assert len(sizes) > 50  # the package itself, not an installed stub
    over = {f: n for f, n in sorted(sizes.items()) if n > MAX_LINES}
    assert not over, (f"source files above {MAX_LINES} lines: {over}; split each by role into "
                      "modules of one package, keeping its public names importable")
