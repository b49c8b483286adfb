"""A small, fast version of benchmarks/coverage.py: do the intervals cover a known AUC, and
does the paired test stay quiet on two noise feature sets?"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import norm
from threadpoolctl import threadpool_limits

from medimp.evaluate.cv import cross_validate, make_splits
from medimp.evaluate.intervals import auc_interval, paired_auc_interval
from medimp.evaluate.probes import LogisticProbe

N, DIMS, REPS, AUC = 60, 3, 30, 0.75


def _table(X: np.ndarray, pids: np.ndarray) -> pd.DataFrame:
    df = pd.DataFrame(X, columns=[f"e{i}" for i in range(X.shape[1])])
    return df.assign(patient_id=pids, exam=None, level="patient")


def _repetition(seed: int) -> tuple[bool, bool]:
    rng = np.random.default_rng(seed)
    y = np.zeros(N, dtype=int)
    y[rng.permutation(N)[: int(0.4 * N)]] = 1
    pids = np.array([f"P{i:03d}" for i in range(N)])
    d = np.sqrt(2) * norm.ppf(AUC)
    signal = rng.normal(size=(N, DIMS)) + np.outer(y, np.eye(DIMS)[0]) * d
    splits = make_splits(pids, y, 5, 1, seed)
    tests = [(s.repeat, s.test) for s in splits]
    ratio = float(np.mean([len(s.test) / len(s.train) for s in splits]))
    with threadpool_limits(1):
        sig, na, nb = (cross_validate(_table(X, pids), pids, y, level="patient_mean",
                                      tables=None, splits=splits,
                                      make_probe=lambda: LogisticProbe(Cs=(0.1, 1.0), seed=0))
                       for X in (signal, rng.normal(size=(N, DIMS)),
                                 rng.normal(size=(N, DIMS))))
    ci = auc_interval(y, [sig.scores], tests, ratio)
    p = paired_auc_interval(y, [na.scores], [nb.scores], tests, ratio).p_value
    return ci.low <= AUC <= ci.high, p < 0.05


def test_intervals_cover_a_known_auc_and_the_paired_test_holds_its_level() -> None:
    rows = [_repetition(seed) for seed in range(REPS)]
    covered, false_pos = map(np.array, zip(*rows, strict=True))
    assert covered.mean() >= 0.85, covered.mean()  # nominal 0.95; the old bootstrap: ~0.84
    assert false_pos.mean() <= 0.15, false_pos.mean()  # nominal 0.05
