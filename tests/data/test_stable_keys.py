"""Cache keys and cohort fingerprints are stored on disk (cache entries' names, ``model.json``'s
``cohort_fingerprint``): they must not change when code moves between modules.

The values below were computed before ``medimp.data`` was grouped into ``io``, ``cohort`` and
``pipeline``; a change here recomputes every user's preprocessing cache, or makes every
existing run warn that it was trained on another cohort. Change them only on purpose (a new
``CACHE_FORMAT``, a new fingerprint rule), saying so in CHANGELOG.md.
"""

from __future__ import annotations

from pathlib import Path

from medimp.data import PreprocessCache, PreprocessConfig
from medimp.data.cohort.fingerprint import cohort_fingerprint

FIXTURE = (Path(__file__).resolve().parents[1] / "fixtures" / "medimp_original"
           / "dummy_mri_dataset" / "dummy_mri.nii.gz")
PARAMS = '{"shape":[16,16,16],"spacing":[12.0,12.0,12.0]}'


def test_cache_key_of_the_committed_fixture_is_unchanged(tmp_path) -> None:
    cache = PreprocessCache(tmp_path / "cache")
    assert cache.key([("pre", FIXTURE), ("arterial", None)], PARAMS) == (
        "df2e43c736f9592e6ad6ca43d8d85fd1c43972210f0cc2b5a905b84d0e4cd41c")
    # with a DICOM series UID as the extra part of a source
    assert cache.key([("pre", FIXTURE, "1.2.840.1"), ("arterial", None)], PARAMS) == (
        "94386206a55c7cd1aefd2f2aa79814c3839bdc0475a13e5e4d6b62e5f4c136b2")


def test_cache_key_follows_the_preprocessing_json(tmp_path) -> None:
    """The key of real parameters is the key of their canonical JSON: nothing else enters."""
    config = PreprocessConfig(shape=(16, 16, 16), spacing=(12.0, 12.0, 12.0))
    a = PreprocessCache(tmp_path / "a").key([("pre", FIXTURE)], config.canonical_json())
    b = PreprocessCache(tmp_path / "b").key([("pre", FIXTURE)], config.canonical_json())
    assert a == b
    assert a != PreprocessCache(tmp_path / "c").key([("pre", FIXTURE)], PARAMS)


def test_cohort_fingerprint_is_unchanged(tmp_path) -> None:
    (tmp_path / "patients.csv").write_text("patient_id,donor_age\nP002,50\nP001,61\n")
    (tmp_path / "manifest.csv").write_text(
        "patient_id,exam,phase,path\nP001,D15,pre,images/a.nii.gz\n"
        "P001,D15,arterial,images/b.nii.gz\nP002,M12,tubular,images/c.nii.gz\n")
    assert cohort_fingerprint(tmp_path) == "f0fc9d343cedcbce"
