"""medimp.data: read, check, preprocess and serve a cohort directory.

Three subpackages, by role: ``io`` (image files: readers, DICOM headers, dynamic series,
geometry, the MONAI reader), ``cohort`` (the cohort directory contract: tables, ``Cohort``,
validation, fingerprint, ``medimp init`` and the import of the original MEDIMP layout) and
``pipeline`` (preprocessing, cache, augmentation, datasets, splits, clinical features); errors
shared by all three in ``_errors``. The names below are the public API (see
docs/ARCHITECTURE.md).
"""

# --- ingestion (io, cohort): readers, cohort, validation, import ---
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
from medimp.data.cohort.import_medimp import ImportReport, import_medimp
from medimp.data.cohort.validate import ValidationReport, validate_cohort
from medimp.data.io.readers import (
    DicomSeriesReader,
    NiftiReader,
    Volume,
    get_reader,
    read_volume,
)

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
    "PreprocessConfig": "medimp.data.pipeline.preprocess",
    "PreprocessError": "medimp.data.pipeline.preprocess",
    "load_exam_volume": "medimp.data.pipeline.preprocess",
    "preprocess_exam": "medimp.data.pipeline.preprocess",
    "PreprocessCache": "medimp.data.pipeline.cache",
    "CacheWarning": "medimp.data.pipeline.cache",
    "content_hash": "medimp.data.pipeline.cache",
    "default_cache_dir": "medimp.data.pipeline.cache",
    "AugmentConfig": "medimp.data.pipeline.augment",
    "build_augment": "medimp.data.pipeline.augment",
    "load_augment_config": "medimp.data.pipeline.augment",
    "SplitLeakError": "medimp.data.pipeline.splits",
    "assert_no_patient_leak": "medimp.data.pipeline.splits",
    "holdout_split": "medimp.data.pipeline.splits",
    "patient_folds": "medimp.data.pipeline.splits",
    "patient_kfold": "medimp.data.pipeline.splits",
    "ExamDataset": "medimp.data.pipeline.dataset",
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
