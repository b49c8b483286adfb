"""An evaluation folder to render: the small evaluate-test cohort, with a run's history."""

from __future__ import annotations

import pandas as pd
import pytest

from medimp.evaluate import EvalConfig, evaluate
from tests.evaluate.conftest import noise_embeddings, truth_embeddings, write_cohort


@pytest.fixture(scope="session")
def eval_dir(tmp_path_factory):
    base = tmp_path_factory.mktemp("report")
    cohort = write_cohort(base / "cohort", n_patients=40, seed=0)
    run = base / "run_medimp"
    run.mkdir()
    pd.DataFrame({"epoch": [0, 1, 2], "train_loss": [2.0, 1.5, 1.2],
                  "val_loss": [2.1, 1.7, 1.5]}).to_csv(run / "history.csv", index=False)
    emb = base / "medimp.parquet"
    truth_embeddings(cohort, noise=1.0).to_parquet(emb)
    out = base / "eval"
    res = evaluate(cohort, {"medimp": emb, "random_init": noise_embeddings(cohort)}, out,
                   EvalConfig(n_splits=3, repeats=1, n_bootstrap=50, levels=["patient_mean"],
                              probes=["logistic"], retrieval=False))
    # the history of a run is found through the header's method sources
    m = res.metrics
    m.header.methods["medimp"] = str(run)
    from medimp.evaluate import write_metrics

    write_metrics(m, out / "metrics.json")
    return out
