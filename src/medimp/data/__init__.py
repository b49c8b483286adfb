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
from medimp.data.cohort import Cohort, read_cohort
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
    "read_cohort",
    "read_volume",
    "validate_cohort",
]
# --- end ingestion ---
