"""The model folder of ``medimp fit-prognosis``: what it holds, how it is written and checked.

::

    MODEL/
      model.json          format, versions, the fitting cohort (fingerprint, phases, counts,
                          clinical value ranges), the clinical preprocessing, the pretraining
                          runs (path, file hashes, preprocessing, embedding statistics) and
                          every fitted model (its pipeline as JSON, see serialize.py)
      arrays.safetensors  every array those refer to (coefficients, scalers, PCA, covariances)
      model_card.md       the model card (docs/prognosis.md)

Nothing else may be in the folder: :func:`read_model` refuses a folder holding any other entry
(a pickle, a stray file) before it opens anything, and never unpickles. The hash of
``arrays.safetensors`` is in ``model.json``; each run's ``model.safetensors`` and ``model.json``
hashes are checked before the run is used (:func:`check_runs`).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medimp._io import atomic_path, atomic_write_text
from medimp.data.pipeline.features import ClinicalFeature, ClinicalFeatures
from medimp.prognosis.fit import FittedModel, PrognosisError
from medimp.prognosis.serialize import (
    SerializationError,
    check_sklearn_version,
    dump_estimator,
    load_estimator,
)
from medimp.study import TextVariable

__all__ = ["FORMAT", "MODEL_FILES", "ModelFolder", "RunRef", "check_runs", "file_sha256",
           "read_model", "write_model"]

FORMAT = "medimp-prognosis"
FORMAT_VERSION = 1
MODEL_FILES = ("model.json", "arrays.safetensors", "model_card.md")
RUN_FILES = ("model.safetensors", "model.json")


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class RunRef:
    """A pretraining run a model folder depends on."""

    method: str
    run: str | None
    path: str
    files: dict[str, str]  # file name -> sha256
    info: dict[str, Any]  # phases, preprocess, embed_dim, cohort_fingerprint, image_encoder
    emb_mean: np.ndarray | None = None  # DEV patient-mean embeddings: mean
    emb_precision: np.ndarray | None = None  # shrunk inverse covariance (Ledoit-Wolf)
    dev_distances: np.ndarray | None = None  # DEV's own Mahalanobis distances, sorted

    @property
    def key(self) -> str:
        return self.method if self.run is None else f"{self.method}#{self.run}"


@dataclass
class ModelFolder:
    """Everything a model folder holds, in memory."""

    models: list[FittedModel]
    runs: list[RunRef]
    clinical: ClinicalFeatures | None
    dev: dict[str, Any]  # fingerprint, n_patients, phases, tasks, clinical_ranges, cohort
    config: dict[str, Any]
    meta: dict[str, Any] = field(default_factory=dict)  # versions, created, external figures


# --- clinical preprocessing -------------------------------------------------------------------

def clinical_state(builder: ClinicalFeatures) -> dict[str, Any]:
    feats = []
    for f in builder.features_:
        src = {"variable": f.source.model_dump(mode="json")} if isinstance(
            f.source, TextVariable) else {"column": str(f.source)}
        feats.append({"name": f.name, "source": src, "kind": f.kind,
                      "categories": list(f.categories) if f.categories is not None else None})
    return {"include": builder.include, "sep": builder.sep, "features": feats}


def clinical_from_state(state: dict[str, Any]) -> ClinicalFeatures:
    b = ClinicalFeatures(state["include"], state["sep"])
    feats = []
    for f in state["features"]:
        src = f["source"]
        source = TextVariable.model_validate(src["variable"]) if "variable" in src \
            else str(src["column"])
        cats = tuple(f["categories"]) if f.get("categories") is not None else None
        feats.append(ClinicalFeature(f["name"], source, f["kind"], cats))
    b.features_ = feats
    b.groups_ = [(f.name, [f.name] if f.kind == "numeric"
                  else [f"{f.name}{b.sep}{c}" for c in f.categories or ()]) for f in feats]
    b.columns_ = [c for _, cols in b.groups_ for c in cols]
    return b


# --- writing -----------------------------------------------------------------------------------

def _model_entry(fm: FittedModel, i: int, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    prefix = f"m{i}"
    try:
        spec, arr = dump_estimator(fm.pipeline, f"{prefix}/pipeline")
    except SerializationError as exc:
        raise PrognosisError(f"{fm.key}: {exc}") from exc
    arrays.update(arr)
    if fm.coef_cov is not None:
        arrays[f"{prefix}/coef_cov"] = np.ascontiguousarray(fm.coef_cov, dtype=np.float64)
    return {"key": fm.key, "model": fm.model, "method": fm.method, "run": fm.run,
            "task": fm.task, "kind": fm.kind, "features": fm.features, "columns": fm.columns,
            "threshold": fm.threshold, "params": fm.params, "n": fm.n, "n_pos": fm.n_pos,
            "resid_var": fm.resid_var,
            "coef_cov": f"{prefix}/coef_cov" if fm.coef_cov is not None else None,
            "pipeline": spec}


def write_model(folder: ModelFolder, root: Path, card: str) -> None:
    """Write ``model.json``, ``arrays.safetensors`` and ``model_card.md`` into ``root``
    (a fresh temporary folder: :func:`medimp._io.output_dir` swaps it in)."""
    from safetensors.numpy import save_file


    arrays: dict[str, np.ndarray] = {}
    models = [_model_entry(fm, i, arrays) for i, fm in enumerate(folder.models)]
    runs = []
    for j, r in enumerate(folder.runs):
        entry = {"method": r.method, "run": r.run, "path": r.path, "files": r.files,
                 "info": r.info, "stats": None}
        if r.emb_mean is not None:
            entry["stats"] = f"r{j}"
            arrays[f"r{j}/mean"] = r.emb_mean
            arrays[f"r{j}/precision"] = r.emb_precision
            arrays[f"r{j}/dev_distances"] = r.dev_distances
        runs.append(entry)
    with atomic_path(root / "arrays.safetensors") as tmp:
        save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(tmp))
    doc = {"format": FORMAT, "format_version": FORMAT_VERSION, **folder.meta,
           "config": folder.config, "dev": folder.dev,
           "clinical": clinical_state(folder.clinical) if folder.clinical else None,
           "runs": runs, "models": models,
           "files": {"arrays.safetensors": file_sha256(root / "arrays.safetensors")}}
    atomic_write_text(root / "model.json", json.dumps(doc, indent=1, allow_nan=False) + "\n")
    atomic_write_text(root / "model_card.md", card)


# --- reading -----------------------------------------------------------------------------------

def _refuse_foreign(root: Path) -> None:
    if not root.is_dir():
        raise PrognosisError(f"{root}: not a model folder (written by medimp fit-prognosis)")
    names = sorted(p.name for p in root.iterdir())
    foreign = [n for n in names if n not in MODEL_FILES]
    if foreign:
        raise PrognosisError(
            f"{root}: the model folder holds unexpected entries {foreign[:5]} (only "
            f"{list(MODEL_FILES)} belong there); nothing was opened — remove them, or refit "
            "with medimp fit-prognosis")
    missing = [n for n in MODEL_FILES if n not in names]
    if missing:
        raise PrognosisError(f"{root}: incomplete model folder, {missing} missing; refit with "
                             "medimp fit-prognosis")


def read_model(root: str | os.PathLike[str]) -> ModelFolder:
    """Read and check a model folder (no pickle is ever opened).

    Raises:
        PrognosisError: unexpected files, a changed arrays file, another format or
            scikit-learn version, a component outside the allowed set.
    """
    from safetensors.numpy import load_file

    root = Path(root)
    _refuse_foreign(root)
    try:
        doc = json.loads((root / "model.json").read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise PrognosisError(f"{root / 'model.json'}: not valid JSON ({exc}); refit") from exc
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise PrognosisError(f"{root / 'model.json'}: not a medimp prognosis model")
    if doc.get("format_version") != FORMAT_VERSION:
        raise PrognosisError(f"{root}: format version {doc.get('format_version')} is not "
                             f"{FORMAT_VERSION}; refit with this medimp")
    arrays_path = root / "arrays.safetensors"
    want = (doc.get("files") or {}).get("arrays.safetensors")
    if want != file_sha256(arrays_path):
        raise PrognosisError(f"{arrays_path}: its hash differs from the one in model.json "
                             "(the file was changed or damaged); refit")
    try:
        check_sklearn_version(str(doc.get("sklearn_version")), str(root))
        arrays = load_file(str(arrays_path))
        models = [_read_model_entry(m, arrays) for m in doc["models"]]
        runs = [_read_run_entry(r, arrays) for r in doc["runs"]]
        clinical = clinical_from_state(doc["clinical"]) if doc.get("clinical") else None
        dev, config = dict(doc["dev"]), dict(doc["config"])
    except SerializationError as exc:
        raise PrognosisError(f"{root}: {exc}") from exc
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        # a damaged or hand-edited model.json: one line, not a traceback from deep inside
        raise PrognosisError(f"{root / 'model.json'}: malformed entry ({type(exc).__name__}: "
                             f"{exc}); refit with medimp fit-prognosis") from exc
    meta = {k: doc[k] for k in ("medimp_version", "sklearn_version", "created", "external")
            if k in doc}
    return ModelFolder(models=models, runs=runs, clinical=clinical, dev=dev, config=config,
                       meta=meta)


def _read_run_entry(r: dict[str, Any], arrays: dict[str, np.ndarray]) -> RunRef:
    s = r.get("stats")
    return RunRef(str(r["method"]), r["run"], str(r["path"]), dict(r["files"]), dict(r["info"]),
                  arrays[f"{s}/mean"] if s else None,
                  arrays[f"{s}/precision"] if s else None,
                  arrays[f"{s}/dev_distances"] if s else None)


def _read_model_entry(m: dict[str, Any], arrays: dict[str, np.ndarray]) -> FittedModel:
    pipe = load_estimator(m["pipeline"], arrays, m["key"])
    cov = arrays[m["coef_cov"]] if m.get("coef_cov") else None
    return FittedModel(model=m["model"], method=m["method"], run=m["run"], task=m["task"],
                       kind=m["kind"], features=m["features"], pipeline=pipe,
                       columns=list(m["columns"]), threshold=m["threshold"],
                       params=dict(m["params"]), coef_cov=cov, resid_var=m["resid_var"],
                       n=int(m["n"]), n_pos=m["n_pos"])


def run_files(path: Path) -> dict[str, str]:
    """sha256 of the files of a run that its embeddings depend on."""
    return {name: file_sha256(path / name) for name in RUN_FILES}


def check_runs(runs: list[RunRef]) -> None:
    """Refuse a run that is missing or whose files changed since the model was fitted."""
    for r in runs:
        path = Path(r.path)
        for name in RUN_FILES:  # every file, whatever model.json lists (it may be edited)
            want = r.files.get(name)
            f = path / name
            if not want:
                raise PrognosisError(f"run {r.key}: the model folder records no hash of {name}; "
                                     "it was damaged or edited, refit with medimp fit-prognosis")
            if not f.is_file():
                raise PrognosisError(f"run {r.key}: {f} is missing; the model needs the run it "
                                     "was fitted with (move it back or refit)")
            if file_sha256(f) != want:
                raise PrognosisError(f"run {r.key}: {f} changed since the model was fitted "
                                     "(its hash differs); refit with medimp fit-prognosis")
