"""The model folder read back: a crafted or damaged model.json is one PrognosisError, and a
run's recorded hashes cannot be emptied to skip the check."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from medimp.prognosis import PrognosisError
from medimp.prognosis.fit import FittedModel
from medimp.prognosis.folder import (
    ModelFolder,
    RunRef,
    check_runs,
    read_model,
    run_files,
    write_model,
)


def model_folder(tmp_path: Path) -> tuple[Path, Path]:
    """A real folder (write_model) holding one fitted logistic pipeline and one run."""
    import sklearn

    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3))
    y = (X[:, 0] + rng.normal(0, 0.5, 40) > 0).astype(int)
    pipe = make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y)
    run = tmp_path / "run"
    run.mkdir()
    (run / "model.safetensors").write_bytes(b"weights")
    (run / "model.json").write_text("{}")
    ref = RunRef("ssl", None, str(run), run_files(run), {"phases": ["pre"]})
    fm = FittedModel(model="ssl", method="ssl", run=None, task="status_y2", kind="binary",
                     features="embedding", pipeline=pipe, columns=["e0", "e1", "e2"],
                     threshold=0.5, n=40, n_pos=int(y.sum()))
    folder = ModelFolder(models=[fm], runs=[ref], clinical=None,
                         dev={"phases": ["pre"]}, config={},
                         meta={"sklearn_version": sklearn.__version__})
    root = tmp_path / "model"
    root.mkdir()
    write_model(folder, root, "card\n")
    return root, run


def edit(root: Path, change) -> None:
    doc = json.loads((root / "model.json").read_text())
    change(doc)
    (root / "model.json").write_text(json.dumps(doc))


def test_written_folder_reads_back(tmp_path: Path) -> None:
    root, _ = model_folder(tmp_path)
    folder = read_model(root)
    check_runs(folder.runs)
    assert folder.models[0].key == "ssl/status_y2"


@pytest.mark.parametrize("change", [
    lambda d: d.pop("runs"),
    lambda d: d["models"][0]["pipeline"]["state"].update(C={"__float__": "not a number"}),
    lambda d: d["runs"][0].update(files=None),
    lambda d: d.update(models={"a": 1}),
])
def test_crafted_model_json_is_one_error(tmp_path: Path, change) -> None:
    root, _ = model_folder(tmp_path)
    edit(root, change)
    with pytest.raises(PrognosisError, match=r"model\.json"):
        read_model(root)


def test_emptied_run_hashes_do_not_skip_the_check(tmp_path: Path) -> None:
    root, run = model_folder(tmp_path)
    edit(root, lambda d: d["runs"][0].update(files={}))
    (run / "model.safetensors").write_bytes(b"other weights")
    with pytest.raises(PrognosisError, match="hash"):
        check_runs(read_model(root).runs)


def test_predict_refuses_to_write_into_the_model_folder(tmp_path: Path) -> None:
    """predictions.csv inside MODEL/ would make the folder unreadable (a foreign entry)."""
    import medimp

    root, _ = model_folder(tmp_path)
    cohort = tmp_path / "cohort"  # refused before the cohort is looked at
    with pytest.raises(PrognosisError, match="inside the model folder"):
        medimp.predict(root, cohort, root / "predictions.csv")
    with pytest.raises(PrognosisError, match="inside the model folder"):
        medimp.predict(root, cohort, root / "sub" / ".." / "p.csv")
    assert sorted(p.name for p in root.iterdir()) == ["arrays.safetensors", "model.json",
                                                      "model_card.md"]
    read_model(root)


def test_missing_exam_flag_is_against_the_models_exams(simulated_cohort: Path) -> None:
    """A cohort lacking an exam the model was fitted on is flagged, whatever its study.yaml."""
    from medimp.data import read_cohort
    from medimp.prognosis.run import _flags

    cohort = read_cohort(simulated_cohort)
    exams = list(cohort.study.exam_names)
    folder = ModelFolder(models=[], runs=[], clinical=None, config={},
                         dev={"phases": list(cohort.study.phase_names),
                              "exams": [*exams, "Y5"]})
    patients = np.array(sorted({str(p) for p, _ in cohort.exam_keys()}))
    flags = _flags(folder, cohort, None, {}, patients)
    assert all(any(f.startswith("missing_exams:") and "Y5" in f for f in flags[p])
               for p in patients)


def test_arrays_of_another_shape_are_one_error(tmp_path: Path) -> None:
    """A folder whose arrays and model.json were edited together (the hash then matches):
    a coefficient vector of the wrong length is refused by name, not a numpy traceback."""
    from safetensors.numpy import load_file, save_file

    from medimp.prognosis.fit import apply_model
    from medimp.prognosis.folder import file_sha256

    root, _ = model_folder(tmp_path)
    arrays = load_file(str(root / "arrays.safetensors"))
    key = next(k for k in arrays if k.endswith("/coef_"))
    arrays[key] = np.zeros((1, 5))
    save_file(arrays, str(root / "arrays.safetensors"))
    edit(root, lambda d: d["files"].update({"arrays.safetensors":
                                            file_sha256(root / "arrays.safetensors")}))
    fm = read_model(root).models[0]
    with pytest.raises(PrognosisError, match=r"ssl/status_y2.*refit"):
        apply_model(fm, np.zeros((4, 3)), np.array(["a", "b", "c", "d"]))


def test_embedding_far_from_dev_flags_the_shifted_patient(simulated_cohort: Path) -> None:
    """The Mahalanobis flag: DEV's own patients are rarely flagged, a shifted one is."""
    import pandas as pd

    from medimp.data import read_cohort
    from medimp.prognosis.run import _embedding_stats, _flags

    cohort = read_cohort(simulated_cohort)
    keys = [(str(p), str(e)) for p, e in cohort.exam_keys()]
    rng = np.random.default_rng(0)
    emb = pd.DataFrame(rng.normal(size=(len(keys), 6)), columns=[f"e{i}" for i in range(6)])
    emb.insert(0, "patient_id", [p for p, _ in keys])
    emb.insert(1, "exam", [e for _, e in keys])
    emb.insert(2, "level", "exam")
    ref = RunRef("ssl", None, "unused", {}, {})
    _embedding_stats(ref, emb, cohort)
    patients = np.array(sorted({p for p, _ in keys}))
    folder = ModelFolder(models=[], runs=[ref], clinical=None, config={},
                         dev={"exams": list(cohort.study.exam_names)})
    far = "embedding_far_from_dev:ssl"
    shifted = emb.copy()
    shifted.loc[shifted["patient_id"] == patients[0], ["e0", "e1"]] += 25.0
    flags = _flags(folder, cohort, None, {"ssl": shifted}, patients)
    assert far in flags[patients[0]]
    same = _flags(folder, cohort, None, {"ssl": emb}, patients)
    assert sum(far in same[p] for p in patients) <= 1
