"""Run the benchmarks that run without arguments (``make bench``), then print one table.

Each script says, as module constants (read here without importing it): ``BENCH_MINUTES``
(about how long it takes without arguments on the 2-core machine; None when it needs arguments
or hardware, ``BENCH_SKIP`` says why) and ``BENCH_SMALL`` (the arguments of its smallest
configuration). The plan and its estimated total are printed before anything runs.

    python benchmarks/run_all.py               # every script that runs without arguments
    python benchmarks/run_all.py --smallest    # each script's smallest configuration (a check)
    python benchmarks/run_all.py --only simulate data --dry-run
"""

from __future__ import annotations

import argparse
import ast
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCH_MINUTES = None
BENCH_SKIP = "the runner itself"


@dataclass
class Script:
    path: Path
    minutes: float | None
    skip: str | None
    small: list[str]

    @property
    def name(self) -> str:
        return self.path.stem


def _constants(path: Path) -> dict[str, object]:
    """The module-level ``BENCH_*`` constants of a script (literals only)."""
    out: dict[str, object] = {}
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
            if isinstance(target, ast.Name) and target.id.startswith("BENCH_"):
                out[target.id] = ast.literal_eval(node.value)
    return out


def scripts(folder: Path = HERE) -> list[Script]:
    """Every benchmark script with its constants; a script without them is an error."""
    found = []
    for path in sorted(folder.glob("*.py")):
        if path.name.startswith("_") or path.name == Path(__file__).name:
            continue
        c = _constants(path)
        if "BENCH_MINUTES" not in c:
            raise SystemExit(f"{path}: no BENCH_MINUTES (minutes without arguments, or None "
                             "with BENCH_SKIP saying why); see benchmarks/_common.py")
        minutes = c["BENCH_MINUTES"]
        skip = c.get("BENCH_SKIP") if minutes is None else None
        if minutes is None and not skip:
            raise SystemExit(f"{path}: BENCH_MINUTES is None: say why in BENCH_SKIP")
        found.append(Script(path, minutes, skip, [str(a) for a in c.get("BENCH_SMALL", [])]))
    return found


def _plan(todo: list[Script], skipped: list[Script], smallest: bool) -> None:
    what = "smallest configurations" if smallest else "defaults, no arguments"
    print(f"benchmarks ({what}):")
    for s in todo:
        args = " ".join(s.small) if smallest else ""
        est = "" if smallest else f"~{s.minutes:g} min"
        print(f"  {s.name:<26} {est:>10}  {args}")
    for s in skipped:
        print(f"  {s.name:<26} {'skipped':>10}  {s.skip}")
    if not smallest:
        total = sum(s.minutes or 0 for s in todo)
        print(f"estimated total: about {total:.0f} min on the 2-core machine "
              f"({len(todo)} scripts; figures in benchmarks/results/*.json)", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smallest", action="store_true",
                    help="run each script with its smallest configuration (BENCH_SMALL)")
    ap.add_argument("--only", nargs="+", default=None, help="these scripts (by name)")
    ap.add_argument("--dry-run", action="store_true", help="print the plan and stop")
    ap.add_argument("--timeout", type=float, default=None, help="seconds per script")
    args = ap.parse_args()

    every = scripts()
    if args.only:
        unknown = set(args.only) - {s.name for s in every}
        if unknown:
            ap.error(f"no benchmark {sorted(unknown)}; choose from {[s.name for s in every]}")
        every = [s for s in every if s.name in args.only]
    # the smallest configurations of scripts that need arguments run too (they give them)
    todo = [s for s in every if s.minutes is not None or (args.smallest and s.small)]
    skipped = [s for s in every if s not in todo]
    _plan(todo, skipped, args.smallest)
    if args.dry_run:
        return 0
    env = {**os.environ, "MPLBACKEND": "Agg", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    rows = []
    for s in todo:
        cmd = [sys.executable, str(s.path), *(s.small if args.smallest else [])]
        print(f"\n== {s.name}: {' '.join(cmd[1:])}", flush=True)
        t0 = time.perf_counter()
        try:
            rc = subprocess.run(cmd, env=env, check=False, timeout=args.timeout).returncode
        except subprocess.TimeoutExpired:
            rc = "timeout"
        rows.append((s.name, rc, time.perf_counter() - t0, s.minutes))
    print(f"\n{'benchmark':<26} {'status':>8} {'seconds':>9} {'estimate':>9}")
    for name, rc, sec, est in rows:
        status = "ok" if rc == 0 else f"rc {rc}"
        print(f"{name:<26} {status:>8} {sec:>9.0f} "
              f"{'' if est is None else f'~{est:g} min':>9}")
    failed = [r for r in rows if r[1] != 0]
    print(f"{len(rows) - len(failed)} of {len(rows)} benchmarks ran; "
          f"{sum(r[2] for r in rows) / 60:.1f} min in all")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
