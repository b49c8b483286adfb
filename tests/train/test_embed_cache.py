"""``embed`` (and so ``evaluate``) reads the volumes a run's pretraining preprocessed into its own
``cache_dir`` instead of preprocessing the cohort again into the cohort's default cache."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from medimp.data.pipeline.cache import PreprocessCache
from medimp.data.pipeline.cache_dir import default_cache_dir
from medimp.train import embed, pretrain
from tests.train.conftest import _tiny, subset_cohort


def _cohort(simulated_cohort: Path, dst: Path) -> Path:
    ids = sorted(pd.read_csv(simulated_cohort / "patients.csv",
                             dtype={"patient_id": str})["patient_id"])[:6]
    root = subset_cohort(simulated_cohort, dst, ids)
    shutil.rmtree(default_cache_dir(root), ignore_errors=True)  # another test's, copied along
    return root


def test_embed_reads_the_cache_pretraining_filled(simulated_cohort: Path,
                                                  tmp_path: Path) -> None:
    cohort = _cohort(simulated_cohort, tmp_path / "cohort")
    cache = tmp_path / "run_cache"
    run = pretrain(cohort, tmp_path / "run", _tiny("epochs=1", cache=cache), progress=False)
    before = PreprocessCache(cache).info()
    assert before.entries > 0

    table = embed(run, cohort)
    exams = int((table["level"] == "exam").sum())

    after = PreprocessCache(cache).info()
    assert exams == before.entries  # every exam, each read from the run's cache
    assert after.entries == before.entries  # a miss would have written a new entry
    assert not default_cache_dir(cohort).exists()  # nothing preprocessed again

    # given explicitly, another folder is still used; the embeddings are the same
    other = embed(run, cohort, cache_dir=tmp_path / "other")
    assert PreprocessCache(tmp_path / "other").info().entries == exams
    np.testing.assert_array_equal(other.filter(regex=r"^e\d+$").to_numpy(),
                                  table.filter(regex=r"^e\d+$").to_numpy())


def test_a_run_cache_that_is_gone_or_relative_falls_back_to_the_cohorts(
        simulated_cohort: Path, tmp_path: Path) -> None:
    cohort = _cohort(simulated_cohort, tmp_path / "cohort")
    cache = tmp_path / "run_cache"
    run = pretrain(cohort, tmp_path / "run", _tiny("epochs=1", cache=cache), progress=False)
    shutil.rmtree(cache)  # e.g. a cluster job's node-local folder
    embed(run, cohort)
    assert not cache.exists()
    assert PreprocessCache(default_cache_dir(cohort)).is_cache_dir()

    # a relative cache_dir names no folder for sure: the cohort's default is used
    info = json.loads((run / "model.json").read_text(encoding="utf-8"))
    info["config"]["cache_dir"] = "relative_cache"
    (run / "model.json").write_text(json.dumps(info), encoding="utf-8")
    shutil.rmtree(default_cache_dir(cohort))
    embed(run, cohort)
    assert PreprocessCache(default_cache_dir(cohort)).is_cache_dir()
    assert not Path("relative_cache").exists()


def test_a_run_cache_this_process_cannot_write_falls_back_to_the_cohorts(
        simulated_cohort: Path, tmp_path: Path) -> None:
    """Another user's cache (here: a read-only view of the run's) is not the one embed writes:
    it embeds with the cohort's default cache instead of failing on a folder it was not
    given."""
    from tests._fs import read_only_view

    cohort = _cohort(simulated_cohort, tmp_path / "cohort")
    cache = tmp_path / "run_cache"
    run = pretrain(cohort, tmp_path / "run", _tiny("epochs=1", cache=cache), progress=False)
    with read_only_view(cache, tmp_path / "ro_cache") as ro:
        info = json.loads((run / "model.json").read_text(encoding="utf-8"))
        info["config"]["cache_dir"] = str(ro)
        (run / "model.json").write_text(json.dumps(info), encoding="utf-8")
        table = embed(run, cohort)
    assert int((table["level"] == "exam").sum()) == PreprocessCache(cache).info().entries
    assert PreprocessCache(default_cache_dir(cohort)).is_cache_dir()
