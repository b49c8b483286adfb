"""Timing of the prompts stage: rules bank, prompt building, bank validation with MiniLM.

Writes benchmarks/results/prompts_build.json and prints a table. Not a test: no assertion.
Run: PYTHONPATH=src python benchmarks/prompts_build.py [--patients 500]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _common import timeit, write_result  # noqa: E402
from tests.prompts.conftest import random_tables  # noqa: E402

from medimp.prompts import build_prompts_from_tables, default_bank, load_bank  # noqa: E402
from medimp.prompts.validate import check_bank  # noqa: E402
from medimp.study import default_study  # noqa: E402

# make bench (benchmarks/run_all.py): minutes without arguments on the 2-core machine,
# and the arguments of the smallest configuration
BENCH_MINUTES = 2
BENCH_SMALL = ['--patients', '20']


def _time(fn, repeat: int = 1):
    """Best seconds of ``repeat`` calls (no warm-up: the first call's cost is the figure) and
    the value of the last."""
    out = []
    timing = timeit(lambda: out.append(fn()), repeats=repeat, warmup=0)
    return timing.best, out[-1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--patients", type=int, default=500)
    args = ap.parse_args()
    study = default_study()
    exams, patients = random_tables(args.patients, seed=0)
    gpt_augs = ROOT / "tests/fixtures/medimp_original/dummy_dataframes/gpt_augs.txt"
    rows = []
    t, _ = _time(lambda: default_bank(study, n=10))
    rows.append(("default_bank(n=10), rules backend (first call)", t, "then cached"))
    t, df = _time(lambda: build_prompts_from_tables(study, exams, patients, seed=0), repeat=2)
    n_exams = df.groupby(["patient_id", "exam"]).ngroups
    rows.append((f"build_prompts: {args.patients} patients, {n_exams} exams", t,
                 f"{len(df)} prompts, {len(df) / t:.0f} prompts/s"))
    if gpt_augs.is_file():
        t, rep = _time(lambda: check_bank(load_bank(gpt_augs), study))
        rows.append(("check gpt_augs.txt (cold: loads MiniLM)", t, f"{len(rep.accepted)}/10 ok"))
        t, rep = _time(lambda: check_bank(default_bank(study, n=30), study))
        rows.append(("check rules bank n=30 (warm model)", t, f"{len(rep.accepted)}/30 ok"))
    result = {"benchmark": "prompts_build",
              "rows": [{"what": w, "seconds": round(s, 4), "note": n} for w, s, n in rows]}
    write_result("prompts_build", result, show=False)
    width = max(len(w) for w, _, _ in rows)
    for w, s, n in rows:
        print(f"{w:<{width}}  {s:8.3f} s  {n}")


if __name__ == "__main__":
    main()
