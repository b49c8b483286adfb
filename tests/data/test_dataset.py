"""ExamDataset on a simulated cohort: shapes, cache use, workers, reproducible augmentation."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import DataLoader

from medimp.data import (
    AugmentConfig,
    ExamDataset,
    PreprocessCache,
    PreprocessConfig,
    PreprocessError,
    load_exam_volume,
    read_cohort,
)

SMALL = PreprocessConfig(spacing=None, shape=(16, 16, 16))


@pytest.fixture(scope="module")
def cohort(simulated_cohort):
    return read_cohort(simulated_cohort)


def _by_index(batches) -> dict[int, torch.Tensor]:
    out = {}
    for b in batches:
        for i, img in zip(b["index"].tolist(), b["image"], strict=True):
            out[i] = img
    return out


def test_stack_items_have_the_documented_shape(cohort, tmp_path) -> None:
    ds = ExamDataset(cohort, SMALL, cache_dir=tmp_path / "cache")
    keys = cohort.exam_keys()
    assert len(ds) == len(keys) > 0
    n_phases = len(cohort.study.phase_names)
    item = ds[3]
    assert item["image"].shape == (n_phases, 16, 16, 16)
    assert item["image"].dtype == torch.float32
    assert item["phase_mask"].dtype == torch.bool and item["phase_mask"].shape == (n_phases,)
    assert (item["patient_id"], item["exam"]) == tuple(keys[3])
    assert isinstance(item["patient_id"], str) and item["index"] == 3
    assert torch.isfinite(item["image"]).all()
    image, mask = load_exam_volume(cohort, item["patient_id"], item["exam"], SMALL)
    np.testing.assert_array_equal(item["image"].numpy(), image)
    np.testing.assert_array_equal(item["phase_mask"].numpy(), mask)


def test_contrast_phases_are_brighter_than_pre(cohort, tmp_path) -> None:
    # one scale per exam keeps the enhancement visible (per-phase scaling would erase it)
    ds = ExamDataset(cohort, SMALL, cache_dir=tmp_path / "cache")
    means = torch.stack([ds[i]["image"].flatten(1).mean(1) for i in range(min(len(ds), 8))])
    assert (means[:, 1:].max(1).values > means[:, 0]).all()


def test_second_epoch_comes_from_the_cache(cohort, tmp_path) -> None:
    root = tmp_path / "cache"
    first = ExamDataset(cohort, SMALL, cache_dir=root)
    a = [first[i]["image"] for i in range(len(first))]
    assert first.cache.misses == len(first) and first.cache.hits == 0
    second = ExamDataset(cohort, SMALL, cache_dir=root)
    b = [second[i]["image"] for i in range(len(second))]
    assert second.cache.hits == len(second) and second.cache.misses == 0
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    first.cache.flush()
    second.cache.flush()
    info = PreprocessCache(root).info()
    assert info.entries == len(first)
    assert (info.hits, info.misses) == (len(first), len(first))


def test_default_cache_dir_is_inside_the_cohort(simulated_cohort, tmp_path) -> None:
    copy = tmp_path / "cohort"
    shutil.copytree(simulated_cohort, copy, ignore=shutil.ignore_patterns(".medimp_cache"))
    ds = ExamDataset(str(copy), SMALL, keys=read_cohort(copy).exam_keys()[:2])
    ds[0]
    assert PreprocessCache(copy / ".medimp_cache").info().entries == 1


def test_workers_collate_and_reproducible_augmentation(cohort, tmp_path) -> None:
    root = tmp_path / "cache"
    keys = cohort.exam_keys()[:6]
    aug = AugmentConfig(affine_prob=1.0, noise_prob=1.0)
    ExamDataset(cohort, SMALL, cache_dir=root, keys=keys).precompute()

    def run(workers: int, epoch: int) -> dict[int, torch.Tensor]:
        ds = ExamDataset(cohort, SMALL, cache_dir=root, augment=aug, seed=11, keys=keys)
        ds.set_epoch(epoch)
        loader = DataLoader(ds, batch_size=4, shuffle=True, num_workers=workers)
        batches = list(loader)
        assert batches[0]["image"].shape[1:] == (3, 16, 16, 16)
        assert isinstance(batches[0]["patient_id"], list)
        return _by_index(batches)

    in_process, two_workers, next_epoch = run(0, 0), run(2, 0), run(0, 1)
    assert sorted(in_process) == list(range(len(keys)))
    for i in in_process:
        assert torch.equal(in_process[i], two_workers[i])
        assert not torch.equal(in_process[i], next_epoch[i])
    # cache hits in the worker processes are counted too
    assert PreprocessCache(root).info().hits >= len(keys)


def test_without_set_epoch_each_epoch_differs_but_seed_reproduces(cohort, tmp_path) -> None:
    keys = cohort.exam_keys()[:2]
    aug = AugmentConfig(affine_prob=1.0)
    ds = ExamDataset(cohort, SMALL, cache_dir=tmp_path / "c", augment=aug, keys=keys)
    torch.manual_seed(0)
    a = ds[0]["image"]
    b = ds[0]["image"]
    torch.manual_seed(0)
    assert not torch.equal(a, b)
    assert torch.equal(ds[0]["image"], a)


def test_single_mode_one_item_per_volume(cohort, tmp_path) -> None:
    keys = cohort.exam_keys()[:3]
    cfg = SMALL.model_copy(update={"phase_mode": "single"})
    single = ExamDataset(cohort, cfg, cache_dir=tmp_path / "cache", keys=keys)
    stack = ExamDataset(cohort, SMALL, cache_dir=tmp_path / "cache", keys=keys)
    n_volumes = sum(
        cohort.volume_path(p, e, ph) is not None for p, e in keys for ph in stack.phases
    )
    assert len(single) == n_volumes
    item = single[1]
    assert item["image"].shape == (1, 16, 16, 16) and item["phase_mask"].tolist() == [True]
    c = stack.phases.index(item["phase"])
    ref = stack[keys.index((item["patient_id"], item["exam"]))]["image"][c]
    assert torch.equal(item["image"][0], ref)


def test_missing_phase_is_a_zero_channel_even_after_augmentation(simulated_cohort, tmp_path):
    copy = tmp_path / "cohort"
    shutil.copytree(simulated_cohort, copy, ignore=shutil.ignore_patterns(".medimp_cache"))
    manifest = pd.read_csv(copy / "manifest.csv", dtype={"patient_id": str})
    first = manifest.iloc[0]
    phases = read_cohort(copy).study.phase_names
    drop = (manifest.patient_id == first.patient_id) & (manifest.exam == first.exam) & (
        manifest.phase == phases[1]
    )
    manifest[~drop].to_csv(copy / "manifest.csv", index=False)
    cohort = read_cohort(copy)
    key = (str(first.patient_id), str(first.exam))
    ds = ExamDataset(cohort, SMALL, cache_dir=tmp_path / "cache", keys=[key],
                     augment=AugmentConfig(noise_prob=1.0, affine_prob=1.0))
    item = ds[0]
    assert item["phase_mask"].tolist() == [p != phases[1] for p in phases]
    assert not item["image"][1].any()
    assert item["image"][0].abs().sum() > 0


def test_unknown_keys_are_refused(cohort, tmp_path) -> None:
    with pytest.raises(PreprocessError, match="patient NOPE exam D15"):
        ExamDataset(cohort, SMALL, cache_dir=tmp_path, keys=[("NOPE", "D15")])


def test_precompute_fills_the_cache_once(cohort, tmp_path) -> None:
    keys = cohort.exam_keys()[:3]
    ds = ExamDataset(cohort, SMALL, cache_dir=tmp_path / "cache", keys=keys)
    assert ds.precompute() == 3
    assert ds.precompute() == 0
    assert len(list(Path(tmp_path / "cache" / "entries").rglob("*.safetensors"))) == 3
