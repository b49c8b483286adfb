"""medimp.data stage."""

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
