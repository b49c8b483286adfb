"""The evaluation protocol: :class:`EvalConfig` and its description in words.

Every option has a default; docs/evaluate.md ("Protocol") explains each choice.
:func:`protocol_description` is what ``metrics.json`` records in its header (and the report
renders).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["REFERENCE_METHODS", "EvalConfig", "protocol_description"]

#: Methods the evaluation adds itself (not pretrained, so never "one pretraining run").
REFERENCE_METHODS = ("clinical_only", "oracle")


class EvalConfig(BaseModel):
    """Evaluation protocol; every option has a default (docs/evaluate.md, "Protocol")."""

    model_config = ConfigDict(extra="forbid")

    horizons: list[int] = Field([2, 3, 4], description="Years after transplant.")
    threshold: float | None = Field(None, description="eGFR cut-off; None: study.yaml's.")
    n_splits: int = Field(5, ge=2, description="Outer CV folds.")
    repeats: int = Field(5, ge=1, description="Outer CV repeats (new shuffles).")
    n_bootstrap: int = Field(1000, ge=20, description="Deprecated and ignored: the CIs use the "
                             "corrected resampled t; kept so that older scripts still run.")
    seed: int = 0
    levels: list[Literal["exam", "patient_mean", "patient_latest"]] = Field(
        ["exam", "patient_mean", "patient_latest"], description="Sample levels evaluated.")
    probes: list[Literal["logistic", "knn"]] = ["logistic", "knn"]
    Cs: list[float] = Field([0.01, 0.1, 1.0, 10.0], description="Logistic penalties tried.")
    knn_ks: list[int] = Field([5, 10, 20], description="k-NN neighbour counts tried.")
    inner_splits: int = Field(3, ge=2, description="Inner CV folds (penalty, threshold).")
    clinical_only: bool = Field(True, description="Add the clinical-table baseline.")
    oracle: bool = Field(True, description="Add the latent-truth ceiling if truth.csv exists.")
    reference_method: str = Field("medimp", description="Method compared with every other.")
    fixed_methods: list[str] = Field(
        [], description="Methods whose features involve no training seed (e.g. handcrafted "
        "radiomics): one table of them is compared without a seed variance. Every other "
        "method given is taken as pretrained: with one run its comparisons are not decided.")
    survival: bool = Field(True, description="Cox model of graft survival.")
    survival_event: Literal["graft_loss", "poor_status"] = Field(
        "graft_loss", description="Survival endpoint: graft loss, or the composite of graft "
        "loss and eGFR below the threshold at a yearly horizon.")
    survival_pca: int = Field(5, ge=1, description="PCA components for the Cox model.")
    cox_penalizer: float = Field(0.1, gt=0, description="Cox L2 penalty.")
    n_jobs: int = Field(1, description="Parallel cross-validations (joblib; -1: all cores).")
    retrieval: bool = Field(True, description="Image->text retrieval and zero-shot for runs "
                                              "with a text tower.")
    continuous: bool = Field(True, description="eGFR regression tasks egfr_yK (ridge probe, "
                             "the binary task's folds).")
    added_value: bool = Field(True, description="clinical+NAME models (clinical table + the "
                              "image method's embedding, PCA inside each training fold) "
                              "compared with clinical_only.")
    calibration: bool = Field(True, description="Brier score and calibration on the binary "
                              "records; calibration and decision-curve tables.")
    endpoint_level: Literal["exam", "patient_mean", "patient_latest"] = Field(
        "patient_mean", description="Level of the clinical+NAME models and of the "
        "calibration and decision-curve tables.")
    ridge_alphas: list[float] = Field([0.1, 1.0, 10.0, 100.0, 1000.0],
                                      description="Ridge penalties tried (eGFR tasks).")
    pca_ks: list[int] = Field([0, 2, 4, 8], description="Image principal components tried by "
                              "the clinical+NAME models (0: the clinical table alone).")

    @model_validator(mode="after")
    def _endpoint_level_is_evaluated(self) -> EvalConfig:
        if self.endpoint_level not in self.levels:
            if "endpoint_level" in self.model_fields_set:
                raise ValueError(
                    f"endpoint_level {self.endpoint_level!r} is not among levels "
                    f"{self.levels}: the clinical+NAME models are compared with clinical_only "
                    "at that level; add it to levels or choose one of them")
            self.endpoint_level = self.levels[0]  # the default, where it is not evaluated
        if any(k < 0 for k in self.pca_ks) or not self.pca_ks:
            raise ValueError(f"pca_ks must be non-negative numbers of components, got "
                             f"{self.pca_ks}")
        if not self.ridge_alphas or any(a <= 0 for a in self.ridge_alphas):
            raise ValueError(f"ridge_alphas must be positive, got {self.ridge_alphas}")
        return self


def protocol_description(cfg: EvalConfig) -> dict[str, Any]:
    """The protocol as recorded in the header (also rendered in words by the report)."""
    return {
        **cfg.model_dump(),
        "label": "eGFR at K years < threshold, or graft loss before K years; unknown left out",
        "cv": (f"{cfg.repeats}x repeated, {cfg.n_splits}-fold, outcome-stratified, "
               "patient-grouped; the same splits for every method"),
        "exam_level": "each exam a training sample; test-exam probabilities averaged per patient",
        "threshold_rule": ("Youden's J on inner-CV out-of-fold probabilities of the training "
                           "folds (never the test fold)"),
        "metrics": ("patient-level ROC AUC, balanced accuracy, F1 computed on each test fold "
                    f"({cfg.repeats}x{cfg.n_splits} values) and averaged; 95% CI from the "
                    "corrected resampled t (Nadeau & Bengio 2003, for repeated k-fold CV "
                    "Bouckaert & Frank 2004): variance (1/J + n_test/n_train)·s² of the J "
                    "fold values; with "
                    "several pretraining runs, the variance of the run means / runs plus the "
                    "corrected fold variance without the run x fold interaction (counted "
                    "once), Welch–Satterthwaite df"),
        "paired_test": (f"the same corrected t of AUC({cfg.reference_method}) - AUC(other) on "
                        "the same folds; two-sided p, Holm-adjusted (p_holm) over each table's "
                        "family (tasks x other methods at one level and probe); verdict "
                        "'better'/'worse' when p_holm < 0.05, else 'not decided' with the "
                        "reason; a pretrained method with one run is not decided (no seed "
                        "variance); minimal detectable difference for 80% power at alpha 0.05 "
                        "from the noncentral t with the interval's df"),
        "continuous": ("eGFR at K years (0 if the graft was lost before K), unknown left "
                       "out; ridge probe (alpha by inner CV), the binary task's folds; R², "
                       "MAE, Spearman per test fold with the AUC's intervals"),
        "added_value": ("clinical+NAME: the clinical table plus NAME's embedding reduced by "
                        "PCA inside each training fold, k in "
                        f"{cfg.pca_ks} (0 = table alone) chosen with the penalty by inner CV; "
                        "minus clinical_only on the same folds (ΔAUC, ΔBrier, ΔR²); answer "
                        "'yes' when one difference favours the images at Holm-adjusted "
                        "p < 0.05 within the method"),
        "calibration": ("Brier per test fold; calibration intercept and slope by logistic "
                        "recalibration of each repeat's out-of-fold probabilities; net benefit "
                        "TP/n - FP/n · t/(1-t)"),
        "survival_metric": ("Harrell's C on each test fold (risks of one fitted model, never "
                            "pooled across folds), averaged weighted by each fold's comparable "
                            "pairs (folds without a pair left out and counted); CI as for the "
                            "AUC with the effective number of folds; the log-rank p of the "
                            "median risk split is descriptive, not a test"),
    }
