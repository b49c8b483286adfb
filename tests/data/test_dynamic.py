"""Dynamic (4D) series in, phases out: 4D NIfTI with a JSON sidecar, frame selection by index,
time or detected arrival, and timing problems as errors that name the file and the fix."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import yaml

from medimp.data import read_cohort, validate_cohort
from medimp.data._errors import CohortError, DynamicSeriesError, InvalidVolumeError
from medimp.data.io.frames import select_frames
from medimp.data.io.readers import (
    ImageReader,
    NiftiReader,
    Volume,
    VolumeReadError,
    get_reader,
    list_readers,
    read_series,
    register_reader,
)
from medimp.data.pipeline.preprocess import PreprocessConfig, load_exam_volume
from medimp.study import default_study
from tests.data._dynamic_helpers import EXPECTED_FRAMES, TIMES, make_nifti4d_cohort

PRE = PreprocessConfig(shape=(16, 16, 16))


@pytest.fixture(scope="module")
def nifti4d(simulated_cohort: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_nifti4d_cohort(simulated_cohort, tmp_path_factory.mktemp("n4d") / "cohort")


def _set_dynamic(root: Path, **dynamic: object) -> None:
    study = yaml.safe_load((root / "study.yaml").read_text())
    study["dynamic"] = dynamic
    (root / "study.yaml").write_text(yaml.safe_dump(study))


def _one_series(tmp_path: Path, frames: list[np.ndarray], times: list | None,
                name: str = "dce.nii.gz") -> Path:
    path = tmp_path / name
    nib.save(nib.Nifti1Image(np.stack(frames, -1).astype(np.float32), np.diag([2, 2, 3, 1.0])),
             path)
    if times is not None:
        (tmp_path / name.replace(".nii.gz", ".json")).write_text(
            json.dumps({"FrameTimesStart": times}))
    return path


def _curve_frames(levels: list[float]) -> list[np.ndarray]:
    return [np.full((6, 6, 4), lv, dtype=np.float32) for lv in levels]


def test_4d_nifti_cohort_gives_the_same_tensors_as_the_3d_files(simulated_cohort: Path,
                                                                nifti4d: Path) -> None:
    dyn, ref = read_cohort(nifti4d), read_cohort(simulated_cohort)
    assert dyn.exam_keys() == ref.exam_keys()
    n_dynamic = 0
    for pid, exam in dyn.exam_keys():
        assert not ref.is_dynamic(pid, exam)
        if dyn.is_dynamic(pid, exam):
            n_dynamic += 1
            assert dyn.dynamic_selection(pid, exam).frames == EXPECTED_FRAMES
        a, ma = load_exam_volume(dyn, pid, exam, PRE)
        b, mb = load_exam_volume(ref, pid, exam, PRE)
        np.testing.assert_array_equal(ma, mb)
        np.testing.assert_allclose(a, b, atol=1e-6)
    assert n_dynamic > len(dyn.exam_keys()) / 2


def test_validate_reports_chosen_frames_times_and_field_of_view(nifti4d: Path) -> None:
    report = validate_cohort(nifti4d)
    assert report.ok, report.errors
    s = report.summary
    assert s["dynamic_series"] == len(s["dynamic"]) > s["exams"] / 2
    assert len(s["geometry"]) == s["exams"]
    first = next(iter(s["dynamic"].values()))
    assert first["method"] == "auto" and first["n_frames"] == len(TIMES)
    assert first["frames"] == EXPECTED_FRAMES
    assert first["times"] == {"pre": 20.0, "arterial": 50.0, "tubular": 210.0}
    assert 20.0 < first["arrival_s"] <= 30.0
    assert first["time_source"] == "FrameTimesStart of dce.json"
    geo = next(iter(s["geometry"].values()))
    assert geo["shape"] == [24, 24, 24] and all(f > 0 for f in geo["fov_mm"])
    assert s["volumes_per_phase"]["pre"] >= s["dynamic_series"]


def test_select_by_index_and_by_time(nifti4d: Path, tmp_path: Path) -> None:
    root = tmp_path / "c"
    shutil.copytree(nifti4d, root)
    _set_dynamic(root, select="index", frames={"pre": 0, "arterial": 4, "tubular": 12})
    c = read_cohort(root)
    pid, exam = c.exam_keys()[0]
    sel = c.dynamic_selection(pid, exam)
    assert sel.frames == {"pre": 0, "arterial": 4, "tubular": 12} and sel.arrival_s is None
    _set_dynamic(root, select="time", arrival_s=10.0)
    sel = read_cohort(root).dynamic_selection(pid, exam)
    assert sel.frames == {"pre": 0, "arterial": 4, "tubular": 10} and sel.arrival_s == 10.0


def test_region_curve_detects_arrival_the_whole_volume_misses(tmp_path: Path) -> None:
    # only a small box (an "aorta") enhances: 1/64 of the volume, too little for the whole
    frames = []
    for i in range(12):
        f = np.full((8, 8, 8), 100.0, dtype=np.float32)
        f[:2, :2, :2] = 100.0 if i < 3 else 300.0
        frames.append(f)
    path = _one_series(tmp_path, frames, [5.0 * i for i in range(12)])
    series = read_series(path)
    study = default_study().model_copy(update={"phases": default_study().phases[:2]})
    with pytest.raises(DynamicSeriesError, match="no contrast arrival") as exc:
        select_frames(series, study.model_copy(update={"dynamic": type(study.dynamic)(
            min_enhancement=0.1)}))
    assert str(path) in str(exc.value) and "dynamic.region" in str(exc.value)
    spec = type(study.dynamic)(region=[(0, 0.25), (0, 0.25), (0, 0.25)])
    sel = select_frames(series, study.model_copy(update={"dynamic": spec}))
    assert sel.frames == {"pre": 2, "arterial": 8}
    assert sel.arrival_s == pytest.approx(11.0)


@pytest.mark.parametrize(("levels", "times", "match"), [
    ([1, 1], [0, 10], "2 frame\\(s\\) for 3 phases"),
    ([1, 1, 1, 1, 1, 1], [0, 10, 20, 30, 40, 50], "no contrast arrival"),
    ([1, 1, 5, 5, 5, 5], [0, 10, 5, 30, 40, 50], "not increasing: frame 1 at 10 s, frame 2 at 5"),
    ([1, 1, 5, 5, 5, 5], [0, 10, 20], "3 frame times for 6 frames"),
    ([1, 1, 5, 5, 5, 5], None, "frame times unknown"),
    ([5, 5, 5, 5, 5, 5], [0, 10, 20, 30, 40, 50], "no contrast arrival"),
    ([1, 1, 5, 5, 5, 5], [0, 10, 20, 30, 40, 50], "needs a frame at 192 s.*spans 0-50 s"),
])
def test_timing_problems_are_errors_naming_file_and_fix(tmp_path: Path, levels, times,
                                                        match: str) -> None:
    path = _one_series(tmp_path, _curve_frames(levels), times)
    with pytest.raises(InvalidVolumeError, match=match) as exc:
        select_frames(read_series(path), default_study())
    assert str(path) in str(exc.value) and "fix:" in str(exc.value)


def test_two_phases_on_one_frame_and_index_past_the_end(tmp_path: Path) -> None:
    path = _one_series(tmp_path, _curve_frames([1, 1, 5, 5]), [0, 60, 120, 400])
    study = default_study()
    with pytest.raises(DynamicSeriesError, match="both fall on frame"):
        select_frames(read_series(path), study.model_copy(update={"dynamic": type(
            study.dynamic)(tolerance_s=200)}))
    spec = type(study.dynamic)(select="index", frames={"pre": 0, "arterial": 1, "tubular": 9})
    with pytest.raises(DynamicSeriesError, match=r"\{'tubular': 9\} past the last frame"):
        select_frames(read_series(path), study.model_copy(update={"dynamic": spec}))


def test_header_time_step_gives_times_without_sidecar(tmp_path: Path) -> None:
    img = nib.Nifti1Image(np.stack(_curve_frames([1, 1, 1, 5, 5, 5, 5, 5, 5, 5]), -1),
                          np.diag([2, 2, 3, 1.0]))
    img.header.set_xyzt_units("mm", "msec")
    img.header["pixdim"][4] = 30000.0  # 30 s
    nib.save(img, tmp_path / "x.nii.gz")
    series = read_series(tmp_path / "x.nii.gz")
    np.testing.assert_allclose(series.times, 30.0 * np.arange(10))
    assert "header" in series.time_source
    sel = select_frames(series, default_study())
    assert sel.frames == {"pre": 2, "arterial": 3, "tubular": 8}


def test_manifest_mixing_dynamic_and_phase_rows_is_an_error(nifti4d: Path,
                                                            tmp_path: Path) -> None:
    root = tmp_path / "c"
    shutil.copytree(nifti4d, root)
    m = pd.read_csv(root / "manifest.csv", dtype=str)
    extra = m.iloc[[0]].assign(phase="arterial")
    pd.concat([m, extra]).to_csv(root / "manifest.csv", index=False)
    with pytest.raises(CohortError, match=r"'dynamic' row .* and also a row for phase 'arterial'"):
        read_cohort(root)


def test_4d_file_listed_as_a_phase_says_how_to_list_it(nifti4d: Path) -> None:
    path = next((nifti4d / "images").rglob("*.nii.gz"))
    with pytest.raises(InvalidVolumeError, match="write 'dynamic' in the phase column"):
        NiftiReader().read(path)


def test_reader_registry_is_a_decorator_like_the_model_registry(tmp_path: Path) -> None:
    assert list_readers()[:2] == ["nifti", "dicom"]

    @register_reader
    class NpyReader(ImageReader):
        name = "npy_test"

        def verify_suffix(self, path) -> bool:
            return str(path).endswith(".npy")

        def read(self, path) -> Volume:
            return self._finish(np.load(path), np.eye(4), Path(path))

    try:
        np.save(tmp_path / "v.npy", np.ones((3, 4, 5), dtype=np.float32))
        from medimp.data import read_volume

        assert read_volume(tmp_path / "v.npy").shape == (3, 4, 5)
        assert isinstance(get_reader("npy_test"), NpyReader)
        with pytest.raises(VolumeReadError, match="already registered"):
            register_reader(type("Other", (ImageReader,), {"name": "npy_test"}))
        with pytest.raises(VolumeReadError, match="cannot read a dynamic"):
            read_series(tmp_path / "v.npy")
    finally:
        from medimp.data.io.readers import _READERS

        _READERS.pop("npy_test", None)


def test_report_figure_shows_the_curve_and_chosen_frames(nifti4d: Path) -> None:
    import base64

    from medimp.report.figures import dynamic_curve

    c = read_cohort(nifti4d)
    png = base64.b64decode(dynamic_curve(c.dynamic_selection(*c.exam_keys()[0]).to_dict(), "x"))
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_validate_prints_frames_fov_and_a_preprocessing_suggestion(nifti4d: Path) -> None:
    from typer.testing import CliRunner

    from medimp.cli.main import app

    res = CliRunner().invoke(app, ["validate", "--cohort", str(nifti4d), "--suggest-preprocess"],
                             env={"COLUMNS": "250"})
    assert res.exit_code == 0, res.output
    assert "dynamic series: frames chosen per phase" in res.output
    assert "pre: 2 @ 20 s, arterial: 5 @ 50 s, tubular: 11 @ 210 s" in res.output
    assert "field of view" in res.output and "window keeps" in res.output
    assert "suggested preprocessing (CPU): spacing:" in res.output


def test_suggest_preprocess_fits_the_field_of_view() -> None:
    from medimp.data.io.geometry import field_of_view, suggest_preprocess, window_coverage

    assert field_of_view(np.diag([-2.0, 2.0, 3.0, 1.0]), (100, 50, 20)) == (200.0, 100.0, 60.0)
    geos = [{"fov_mm": [300.0, 250.0, 100.0], "spacing_ras": [1.5, 1.5, 3.0]}] * 5
    sug = suggest_preprocess(geos, max_side=32)
    assert sug["shape"] == [32, 32, 32] and sug["covered"] == 1.0
    assert all(sp * n >= f for sp, n, f in zip(sug["spacing"], sug["shape"], [300, 250, 100],
                                                strict=True))
    gpu = suggest_preprocess(geos, max_side=96)
    assert gpu["spacing"][0] < sug["spacing"][0] and max(gpu["shape"]) <= 96
    assert window_coverage([300.0, 250.0, 100.0], (6.0, 6.0, 6.0), (32, 32, 32)) == (
        pytest.approx(0.64), pytest.approx(0.768), 1.0)


def test_suggest_preprocess_does_not_pad_a_coarse_cohort() -> None:
    """16 voxels of 12 mm (the simulator's 16^3 cohorts): the window is rounded up to 32 voxels,
    so its spacing must shrink to fit the field of view, not stay 12 mm (a window twice the FOV,
    the organ an eighth of the volume: found by the review)."""
    from medimp.data.io.geometry import suggest_preprocess

    geos = [{"fov_mm": [205.0, 208.0, 176.0], "spacing_ras": [12.0, 11.75, 10.8]}] * 5
    sug = suggest_preprocess(geos, max_side=32)
    assert sug["shape"][:2] == [32, 32] and sug["covered"] == 1.0
    for sp, n, f in zip(sug["spacing"], sug["shape"], [205.0, 208.0, 176.0], strict=True):
        assert f <= sp * n <= 1.1 * f


def test_broken_sidecar_and_a_3d_file_listed_as_dynamic(tmp_path: Path) -> None:
    from medimp.data._errors import CorruptFileError

    path = _one_series(tmp_path, _curve_frames([1, 1, 5, 5]), None)
    (tmp_path / "dce.json").write_text("{not json")
    with pytest.raises(CorruptFileError, match="JSON sidecar unreadable") as exc:
        read_series(path)
    assert "dce.json" in str(exc.value)
    (tmp_path / "dce.json").write_text(json.dumps({"FrameTimesStart": ["a", "b", "c", "d"]}))
    with pytest.raises(CorruptFileError, match="FrameTimesStart is not a list of times"):
        read_series(path)
    flat = tmp_path / "flat.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((4, 4, 4), np.float32), np.eye(4)), flat)
    with pytest.raises(InvalidVolumeError, match="a dynamic series must be 4D"):
        read_series(flat)


def test_study_yaml_dynamic_section_is_checked() -> None:
    from medimp.study import DynamicSpec, Study

    base = default_study().model_dump()
    with pytest.raises(ValueError, match="needs 'frames'"):
        DynamicSpec(select="index")
    with pytest.raises(ValueError, match="frame for every phase"):
        Study.model_validate({**base, "dynamic": {"select": "index", "frames": {"pre": 0}}})
    with pytest.raises(ValueError, match="needs 'arrival_s'"):
        DynamicSpec(select="time")
    with pytest.raises(ValueError, match="region"):
        DynamicSpec(region=[(0.5, 0.2), (0, 1), (0, 1)])
    with pytest.raises(ValueError, match="reserved"):
        Study.model_validate({**base, "phases": [{"name": "dynamic", "seconds": 0}]})
