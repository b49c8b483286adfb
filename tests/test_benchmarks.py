"""`make bench` (benchmarks/run_all.py) can run what it plans: every script states its time and
its smallest configuration, a script in the default plan needs no argument, and the smallest
configuration only gives options the script declares. Read from the scripts' source (nothing
is run but the runner's --dry-run)."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))
import run_all  # noqa: E402

SCRIPTS = run_all.scripts()


def _options(path: Path) -> tuple[set[str], set[str]]:
    """The ``--options`` a script's argparse declares, and those it declares required
    (including those of the shared helpers of benchmarks/_common.py that it calls)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    declared: set[str] = set()
    required: set[str] = set()
    helpers = {"add_setup_args"} & {n.id if isinstance(n, ast.Name) else getattr(n, "attr", "")
                                    for c in ast.walk(tree) if isinstance(c, ast.Call)
                                    for n in [c.func]}
    trees = [tree] + ([ast.parse((BENCH / "_common.py").read_text(encoding="utf-8"))]
                      if helpers else [])
    for t in trees:
        for node in ast.walk(t):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "add_argument"):
                continue
            names = [a.value for a in node.args if isinstance(a, ast.Constant)
                     and isinstance(a.value, str) and a.value.startswith("--")]
            declared.update(names)
            if any(k.arg == "required" and isinstance(k.value, ast.Constant) and k.value.value
                   for k in node.keywords):
                required.update(names)
    return declared, required


def test_every_script_is_planned() -> None:
    names = {s.name for s in SCRIPTS}
    on_disk = {p.stem for p in BENCH.glob("*.py") if not p.name.startswith("_")} - {"run_all"}
    assert names == on_disk
    for s in SCRIPTS:
        assert s.small, f"{s.path.name}: no BENCH_SMALL (its smallest configuration)"


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda s: s.name)
def test_smallest_configuration_gives_declared_options(script) -> None:
    declared, required = _options(script.path)
    given = {a.split("=")[0] for a in script.small if a.startswith("--")}
    assert given <= declared, (f"{script.path.name}: BENCH_SMALL gives {sorted(given - declared)}"
                               f", which its argparse does not declare ({sorted(declared)})")
    assert required <= given, f"{script.path.name}: BENCH_SMALL lacks {sorted(required)}"
    if script.minutes is not None:  # `make bench` runs it without arguments
        assert not required, (f"{script.path.name} is in `make bench` (BENCH_MINUTES "
                              f"{script.minutes}) but requires {sorted(required)}")


def test_dry_run_prints_the_plan_and_its_time() -> None:
    res = subprocess.run([sys.executable, str(BENCH / "run_all.py"), "--dry-run"],
                         capture_output=True, text=True, check=False, timeout=120)
    assert res.returncode == 0, res.stderr
    total = sum(s.minutes for s in SCRIPTS if s.minutes is not None)
    assert f"estimated total: about {total:.0f} min" in res.stdout
    for s in SCRIPTS:
        line = next(x for x in res.stdout.splitlines() if x.split()[:1] == [s.name])
        if s.minutes is None:
            assert "skipped" in line and s.skip in line
        else:
            assert re.search(rf"~{s.minutes:g} min", line), line
