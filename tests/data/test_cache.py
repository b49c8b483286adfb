"""The on-disk cache: computed once, keyed by content + parameters, self-healing, no pickles."""

from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from medimp.cli.main import app
from medimp.data.pipeline.cache import CacheWarning, PreprocessCache, content_hash
from medimp.data.pipeline.preprocess import PreprocessConfig, preprocess_exam

from ._pipe_helpers import kidney_phases, load_nifti, write_nifti

PHASES = ["pre", "arterial", "tubular"]


@pytest.fixture
def exam_files(tmp_path: Path) -> dict[str, Path]:
    vols = kidney_phases()
    return {p: write_nifti(tmp_path / "images" / f"{p}.nii.gz", v) for p, v in vols.items()}


class Counter:
    """Preprocesses the exam from its files and counts how often it really ran."""

    def __init__(self, files: dict[str, Path], config: PreprocessConfig) -> None:
        self.files, self.config, self.calls = files, config, 0

    def __call__(self) -> tuple[np.ndarray, np.ndarray]:
        self.calls += 1
        vols = {p: load_nifti(f) for p, f in self.files.items()}
        return preprocess_exam(vols, PHASES, self.config)

    def get(self, cache: PreprocessCache) -> tuple[np.ndarray, np.ndarray]:
        sources = [(p, self.files[p]) for p in PHASES]
        return cache.get_or_compute(sources, self.config.canonical_json(), self)


def _entries(root: Path) -> list[Path]:
    return sorted((root / "entries").rglob("*.safetensors"))


def test_computed_once_then_read_back(tmp_path, exam_files) -> None:
    cache = PreprocessCache(tmp_path / "cache")
    job = Counter(exam_files, PreprocessConfig(shape=(16, 16, 16)))
    first = job.get(cache)
    second = job.get(cache)
    assert job.calls == 1
    np.testing.assert_array_equal(first[0], second[0])
    assert second[0].dtype == np.float32 and second[1].dtype == bool
    assert (cache.hits, cache.misses) == (1, 1)
    # a fresh object (another process, another epoch) reads the same entry
    again = Counter(exam_files, job.config)
    np.testing.assert_array_equal(again.get(PreprocessCache(tmp_path / "cache"))[0], first[0])
    assert again.calls == 0


def test_entries_are_safetensors_not_pickles(tmp_path, exam_files) -> None:
    cache = PreprocessCache(tmp_path / "cache")
    Counter(exam_files, PreprocessConfig(shape=(16, 16, 16))).get(cache)
    (entry,) = _entries(tmp_path / "cache")
    data = entry.read_bytes()
    assert not data.startswith(b"\x80")  # pickle protocol marker
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + n])
    assert header["image"]["dtype"] == "F32" and header["image"]["shape"] == [3, 16, 16, 16]
    assert header["__metadata__"]["key"] == entry.stem


def test_changing_parameters_or_content_recomputes(tmp_path, exam_files) -> None:
    cache = PreprocessCache(tmp_path / "cache")
    job = Counter(exam_files, PreprocessConfig(shape=(16, 16, 16)))
    job.get(cache)
    job.config = PreprocessConfig(shape=(12, 12, 12))
    before, _ = job.get(cache)
    assert before.shape == (3, 12, 12, 12)
    assert job.calls == 2
    # same bytes, new mtime: still a hit (content hash, not timestamp)
    st = exam_files["pre"].stat()
    os.utime(exam_files["pre"], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    job.get(cache)
    assert job.calls == 2
    # new bytes: recomputed, and the new image is what comes back
    write_nifti(exam_files["pre"], kidney_phases()["pre"] * 3)
    image, _ = job.get(cache)
    assert job.calls == 3
    assert len(_entries(tmp_path / "cache")) == 3
    # the arterial phase is now scaled by a 3x brighter pre phase: not the old entry
    assert image[1].max() < 0.8 * before[1].max()


@pytest.mark.parametrize("damage", ["flip", "truncate", "empty", "stale"])
def test_corrupt_or_stale_entry_is_rebuilt_with_a_warning(tmp_path, exam_files, damage) -> None:
    cache = PreprocessCache(tmp_path / "cache")
    job = Counter(exam_files, PreprocessConfig(shape=(16, 16, 16)))
    good, _ = job.get(cache)
    (entry,) = _entries(tmp_path / "cache")
    data = bytearray(entry.read_bytes())
    if damage == "flip":
        data[-100] ^= 0xFF
        entry.write_bytes(bytes(data))
    elif damage == "truncate":
        entry.write_bytes(bytes(data[: len(data) // 2]))
    elif damage == "empty":
        entry.write_bytes(b"")
    else:  # an entry made for other parameters, put under this key
        other = PreprocessCache(tmp_path / "other")
        Counter(exam_files, PreprocessConfig(shape=(16, 16, 16), percentiles=(5, 95))).get(other)
        shutil.copyfile(_entries(tmp_path / "other")[0], entry)
    with pytest.warns(CacheWarning, match=entry.name):
        image, _ = job.get(cache)
    assert job.calls == 2
    np.testing.assert_array_equal(image, good)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(job.get(cache)[0], good)  # healthy again
    assert cache.rebuilt == 1


def test_hashes_are_memoised_not_reread(tmp_path, exam_files, monkeypatch) -> None:
    cache = PreprocessCache(tmp_path / "cache")
    job = Counter(exam_files, PreprocessConfig(shape=(16, 16, 16)))
    job.get(cache)
    cache.flush()
    reads = []
    from medimp.data.pipeline import _hashing

    real = _hashing._sha256_of
    monkeypatch.setattr(_hashing, "_sha256_of", lambda p: reads.append(p) or real(p))
    _hashing._memo.clear()  # as in a new process: only hashes.json is left
    for _ in range(3):
        job.get(PreprocessCache(tmp_path / "cache"))
    assert reads == [] and job.calls == 1
    write_nifti(exam_files["arterial"], kidney_phases(seed=2)["arterial"])
    job.get(cache)
    assert reads == [exam_files["arterial"].resolve()]


def test_folder_hash_covers_every_file_and_name(tmp_path) -> None:
    series = tmp_path / "series"
    series.mkdir()
    for i in range(3):
        (series / f"IM{i}.dcm").write_bytes(bytes([i]) * 100)
    h1 = content_hash(series)
    (series / "IM1.dcm").write_bytes(bytes([9]) * 100)
    h2 = content_hash(series)
    (series / "IM1.dcm").rename(series / "IM7.dcm")
    h3 = content_hash(series)
    assert len({h1, h2, h3}) == 3
    copy = tmp_path / "copy"
    shutil.copytree(series, copy)
    assert content_hash(copy) == h3  # content, not location


def test_info_clear_and_refusal_to_clear_a_foreign_folder(tmp_path, exam_files) -> None:
    root = tmp_path / "cache"
    cache = PreprocessCache(root)
    job = Counter(exam_files, PreprocessConfig(shape=(16, 16, 16)))
    job.get(cache)
    job.get(cache)
    rec = cache.info()
    assert (rec.entries, rec.hits, rec.misses, rec.hashed_sources) == (1, 1, 1, 3)
    assert rec.bytes > 3 * 16**3 * 4
    assert cache.clear() == 1 and not root.exists()
    foreign = tmp_path / "images"
    with pytest.raises(ValueError, match="not a medimp cache"):
        PreprocessCache(foreign).clear()
    assert exam_files["pre"].exists()


def test_cli_info_and_clear(tmp_path, exam_files) -> None:
    root = tmp_path / "cache"
    Counter(exam_files, PreprocessConfig(shape=(16, 16, 16))).get(PreprocessCache(root))
    runner = CliRunner()
    res = runner.invoke(app, ["cache", "info", "--cache", str(root), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["entries"] == 1
    res = runner.invoke(app, ["cache", "info", "--cache", str(root)])
    assert res.exit_code == 0 and "entries" in res.output
    res = runner.invoke(app, ["cache", "clear", "--cache", str(root)])
    assert res.exit_code == 2 and "--yes" in res.output and root.exists()
    res = runner.invoke(app, ["cache", "clear", "--cache", str(tmp_path / "images"), "--yes"])
    assert res.exit_code == 2 and exam_files["pre"].exists()
    res = runner.invoke(app, ["cache", "clear", "--cache", str(root), "--yes"])
    assert res.exit_code == 0 and not root.exists()
    res = runner.invoke(app, ["cache", "info"])
    assert res.exit_code == 2
    # a cache folder that does not exist is an error (one line, exit 2), not an empty cache
    res = runner.invoke(app, ["cache", "info", "--cache", str(root)])
    assert res.exit_code == 2 and res.output.count("\n") == 1, res.output
    assert str(root) in res.output and "no such cache folder" in res.output
    res = runner.invoke(app, ["cache", "info", "--cohort", str(tmp_path), "--json"])
    assert res.exit_code == 2 and res.output.count("\n") == 1, res.output
    assert "no preprocessing cache yet" in res.output and "{" not in res.output
    # COHORT argument: the default cache folder inside it
    Counter(exam_files, PreprocessConfig(shape=(16, 16, 16))).get(
        PreprocessCache(tmp_path / ".medimp_cache"))
    res = runner.invoke(app, ["cache", "info", "--cohort", str(tmp_path), "--json"])
    assert res.exit_code == 0 and json.loads(res.output)["path"].endswith(".medimp_cache")


def test_counters_of_finished_processes_are_folded(tmp_path, exam_files) -> None:
    import socket

    root = tmp_path / "cache"
    cache = PreprocessCache(root)
    job = Counter(exam_files, PreprocessConfig(shape=(16, 16, 16)))
    job.get(cache)
    cache.flush()
    # two finished workers left their counters behind (pid 2**22 + 1 is never alive on Linux)
    dead = f"{socket.gethostname()}-{2**22 + 1}-abcd1234.json"
    (root / "stats" / dead).write_text(json.dumps({"hits": 5, "misses": 0, "rebuilt": 1}))
    first = cache.info()
    assert (first.hits, first.misses, first.rebuilt) == (5, 1, 1)
    assert not (root / "stats" / dead).exists()
    assert (root / "stats" / "total.json").is_file()
    assert cache.info().hits == 5  # folded once, not counted twice


def test_in_place_edit_keeping_size_and_mtime_is_not_served_stale(tmp_path, exam_files
                                                                  ) -> None:
    """An edit that keeps the file's size and restores its mtime (a tool preserving timestamps,
    ``touch -r``) still gives a new key: the source's ctime moved."""
    import time

    cache = PreprocessCache(tmp_path / "cache")
    job = Counter(exam_files, PreprocessConfig(shape=(16, 16, 16)))
    before, _ = job.get(cache)
    cache.flush()
    path = exam_files["arterial"]
    st = path.stat()
    data = bytearray(path.read_bytes())
    edited = tmp_path / "edited.nii.gz"
    write_nifti(edited, kidney_phases()["arterial"] * 2)
    new = edited.read_bytes()
    assert len(new) != len(data) or new != bytes(data)
    time.sleep(0.05)  # past the file system's clock tick
    # same size: overwrite in place with the other image's bytes, padded/cut to the length
    # (gzip ignores trailing bytes after the stream; a cut stream would fail to read, so pad)
    if len(new) <= len(data):
        with path.open("r+b") as fh:
            fh.write(new + bytes(len(data) - len(new)))
    else:
        pytest.skip("edited image compresses larger than the original")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (path.stat().st_size, path.stat().st_mtime_ns) == (st.st_size, st.st_mtime_ns)
    for fresh in (cache, PreprocessCache(tmp_path / "cache")):  # this process, and a new one
        image, _ = job.get(fresh)
        assert not np.array_equal(image, before)
    assert job.calls == 2


def test_shared_hash_memo_is_rewritten_under_the_cache_lock(tmp_path, exam_files) -> None:
    """Another process holding the cache's lock makes flush wait: hashes.json is never
    rewritten by two processes at once (one would drop the other's hashes)."""
    import subprocess
    import sys
    import threading
    import time

    cache = PreprocessCache(tmp_path / "cache")
    Counter(exam_files, PreprocessConfig(shape=(16, 16, 16))).get(cache)
    cache.flush()
    other = write_nifti(tmp_path / "other.nii.gz", kidney_phases()["pre"] + 1)
    cache.key([("pre", other)], "{}")  # a new source hash to write
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from filelock import FileLock\n"
        f"l = FileLock({str(tmp_path / 'cache' / '.lock')!r}); l.acquire()\n"
        "print('held', flush=True); time.sleep(3)\n")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        t0 = time.monotonic()
        done = threading.Event()
        threading.Thread(target=lambda: (cache.flush(), done.set()), daemon=True).start()
        assert not done.wait(1.0)  # waiting for the other process
        assert done.wait(30)
        assert time.monotonic() - t0 > 1.5
    finally:
        holder.wait(30)
    assert len(json.loads((tmp_path / "cache" / "hashes.json").read_text())) == 4


def test_keys_of_a_series_folder_once_per_run_still_content_sensitive(tmp_path) -> None:
    """With ``remember_keys`` (what ExamDataset uses, one object per run) a DICOM series
    folder is walked once: a later read of the same exam gets the key of the first, without a
    walk; the next run (a new object) sees an edited slice and gets a new key."""
    series = tmp_path / "series"
    series.mkdir()
    for i in range(4):
        (series / f"IM{i}.dcm").write_bytes(bytes([i]) * 64)
    params = PreprocessConfig(shape=(16, 16, 16)).canonical_json()
    run = PreprocessCache(tmp_path / "cache", remember_keys=True)
    first = run.key([("pre", series, "1.2.3")], params)
    (series / "IM2.dcm").write_bytes(bytes([7]) * 64)  # an edited slice
    assert run.key([("pre", series, "1.2.3")], params) == first  # no walk within the run
    assert run.key([("pre", series, "1.2.4")], params) != first  # other sources, other key
    next_run = PreprocessCache(tmp_path / "cache", remember_keys=True)
    assert next_run.key([("pre", series, "1.2.3")], params) != first
    assert PreprocessCache(tmp_path / "cache").key([("pre", series, "1.2.3")], params) == \
        next_run.key([("pre", series, "1.2.3")], params)
    import copy  # a DataLoader worker gets the remembered keys with the dataset (same state)

    assert copy.deepcopy(run).key([("pre", series, "1.2.3")], params) == first
