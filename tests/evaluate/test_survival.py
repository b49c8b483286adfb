"""Cox model on embeddings: informative features beat noise."""

from __future__ import annotations

from medimp.data import read_cohort
from medimp.evaluate.labels import survival_table
from medimp.evaluate.survival import cox_cross_validate
from tests.evaluate.conftest import noise_embeddings, truth_embeddings


def test_cox_c_index(eval_cohort) -> None:
    tables = read_cohort(eval_cohort)
    surv = survival_table(tables)
    assert surv["event"].sum() >= 3
    kw = {"n_splits": 3, "repeats": 1, "seed": 0, "n_components": 3, "n_boot": 100}
    good = cox_cross_validate(truth_embeddings(eval_cohort, 0.5), surv, tables, **kw)
    bad = cox_cross_validate(noise_embeddings(eval_cohort), surv, tables, **kw)
    assert good.c_index > 0.75 and good.c_index > bad.c_index + 0.15
    assert good.c_index_ci[0] <= good.c_index <= good.c_index_ci[1]
    assert good.logrank_p is not None and good.logrank_p < 0.05
    assert set(good.group) == {0, 1}
