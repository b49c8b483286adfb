"""medimp.data: read, check, preprocess and serve a cohort directory.

Ingestion (readers, cohort reading, validation, import of the original MEDIMP layout) and the
pipeline (preprocessing, cache, augmentation, splits, datasets) live in separate modules; the
names below are the public API (see docs/ARCHITECTURE.md).
"""

# --- ingestion (data-io): readers, cohort, validation, import ---
from medimp.data._errors import (
    CohortError,
    CorruptFileError,
    DicomSeriesError,
    ImportMappingError,
    InvalidVolumeError,
    MedimpDataError,
    Problem,
    VolumeReadError,
)
from medimp.data.cohort import Cohort, leakage_reason, read_cohort
from medimp.data.import_medimp import ImportReport, import_medimp
from medimp.data.readers import (
    DicomSeriesReader,
    NiftiReader,
    Volume,
    get_reader,
    read_volume,
)
from medimp.data.validate import ValidationReport, validate_cohort

__all__ = [
    "Cohort",
    "CohortError",
    "CorruptFileError",
    "DicomSeriesError",
    "DicomSeriesReader",
    "ImportMappingError",
    "ImportReport",
    "InvalidVolumeError",
    "MedimpDataError",
    "NiftiReader",
    "Problem",
    "ValidationReport",
    "Volume",
    "VolumeReadError",
    "get_reader",
    "import_medimp",
    "leakage_reason",
    "read_cohort",
    "read_volume",
    "validate_cohort",
]
# --- end ingestion ---

# --- data pipeline: preprocess, cache, augment, splits, dataset -------------------------------
# Imported on first use (PEP 562): they pull in torch, MONAI and scikit-learn, which commands
# such as `medimp validate` do not need.
_PIPELINE_EXPORTS = {
    "PreprocessConfig": "medimp.data.preprocess",
    "PreprocessError": "medimp.data.preprocess",
    "load_exam_volume": "medimp.data.preprocess",
    "preprocess_exam": "medimp.data.preprocess",
    "PreprocessCache": "medimp.data.cache",
    "CacheWarning": "medimp.data.cache",
    "content_hash": "medimp.data.cache",
    "default_cache_dir": "medimp.data.cache",
    "AugmentConfig": "medimp.data.augment",
    "build_augment": "medimp.data.augment",
    "load_augment_config": "medimp.data.augment",
    "SplitLeakError": "medimp.data.splits",
    "assert_no_patient_leak": "medimp.data.splits",
    "holdout_split": "medimp.data.splits",
    "patient_folds": "medimp.data.splits",
    "patient_kfold": "medimp.data.splits",
    "ExamDataset": "medimp.data.dataset",
}


def __getattr__(name: str) -> object:
    module = _PIPELINE_EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'medimp.data' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_PIPELINE_EXPORTS})

__all__ += sorted(_PIPELINE_EXPORTS)  # noqa: PLE0605
