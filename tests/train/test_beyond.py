"""Options beyond MEDIMP (docs/train.md), each trained for one tiny epoch on the simulated cohort.

Soft (MedCLIP) targets, SLIP, clinician wording, true SimCLR negatives, the missing-phase mask,
and pretraining on each patient's earliest exams.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from medimp.data import ExamDataset, read_cohort
from medimp.data.pipeline.phases import drop_phases, encoder_input
from medimp.train import ConfigError, embed, load_image_encoder, pretrain
from medimp.train.datamodule import PretrainDataModule, earliest_exams


def _history(run) -> pd.DataFrame:
    h = pd.read_csv(run / "history.csv")
    assert len(h) == 1 and np.isfinite(h["train_loss"]).all()
    return h


@pytest.mark.parametrize("overrides", [
    ("method=medclip_soft",),
    ("method=slip", "method_options.ssl_weight=0.5", "augment={}"),
    ("method=image_ssl", "method_options.negatives=nt_xent", "augment={}"),
    ("method=medclip_soft", "prompts.wording=clinician_fine", "exams_per_patient=1"),
], ids=["medclip_soft", "slip", "simclr", "clinician_fine+soft+earliest"])
def test_one_epoch_of_each_option(overrides, simulated_cohort, tiny_config, tmp_path) -> None:
    run = pretrain(simulated_cohort, tmp_path / "run", tiny_config("epochs=1", *overrides),
                   progress=False)
    _history(run)
    info = json.loads((run / "model.json").read_text())
    assert info["epochs_trained"] == 1
    table = embed(run, simulated_cohort)
    assert np.isfinite(table.filter(regex=r"^e\d+$").to_numpy(dtype=float)).all()


def test_nt_xent_changes_the_image_ssl_loss(simulated_cohort, tiny_config) -> None:
    from medimp.models import ClipLoss, NTXentLoss
    from medimp.train.module import PretrainModule

    for neg, cls in (("cross_view", ClipLoss), ("nt_xent", NTXentLoss)):
        cfg = tiny_config("method=image_ssl", f"method_options.negatives={neg}", "augment={}")
        module = PretrainModule(cfg.model_dump(mode="json"), in_channels=3)
        assert type(module.loss_fn) is cls


def test_image_ssl_is_true_simclr_by_default(tiny_config) -> None:
    """The baseline medimp is compared with is SimCLR's NT-Xent (2N-2 negatives),
    not the cross-view InfoNCE (N-1) it was before; the old loss stays an option."""
    from medimp.models import NTXentLoss
    from medimp.train.module import PretrainModule

    cfg = tiny_config("method=image_ssl", "augment={}")
    assert type(PretrainModule(cfg.model_dump(mode="json"), in_channels=3).loss_fn) is NTXentLoss


def test_image_ssl_with_siglip_says_how(tiny_config) -> None:
    from medimp.train.objectives import create_objective

    cfg = tiny_config("method=image_ssl", "loss.name=siglip")
    with pytest.raises(ConfigError, match="negatives=cross_view"):
        create_objective(cfg.method, cfg).check()


def test_slip_needs_augmentation(simulated_cohort, tiny_config) -> None:
    with pytest.raises(ConfigError, match="slip needs augmentation"):
        PretrainDataModule(simulated_cohort, tiny_config("method=slip"))


def test_soft_targets_come_from_the_prompts_facts(simulated_cohort, tiny_config) -> None:
    from medimp.prompts import exam_words

    dm = PretrainDataModule(simulated_cohort, tiny_config("method=medclip_soft"))
    facts = dm.objective.facts
    keys = dm.train_keys
    words = {k: tuple(sorted(exam_words(dm.cohort, *k).items())) for k in keys}
    for a in keys[:12]:
        for b in keys[:12]:
            same = np.array_equal(np.nan_to_num(facts[a], nan=-1),
                                  np.nan_to_num(facts[b], nan=-1))
            assert same == (words[a] == words[b])
    dm.setup()
    item = dm.train_set[0]
    assert item["facts"].shape == (len(dm.cohort.study.variables),) and "prompts" in item


@pytest.mark.parametrize(("overrides", "match"), [
    (("method=medclip_soft", "loss.name=siglip"), "loss.name 'clip'"),
    (("method=medclip_soft", "loss.same_content_mask=true"), "contradicts"),
    (("method=image_ssl", "method_options.negatives=nt_xent", "loss.name=siglip"),
     "loss.name 'clip'"),
])
def test_options_that_cannot_apply_are_refused(overrides, match, tiny_config) -> None:
    from medimp.train.objectives import create_objective

    cfg = tiny_config(*overrides)
    with pytest.raises(ConfigError, match=match):
        create_objective(cfg.method, cfg).check()


@pytest.mark.parametrize(("overrides", "match"), [
    (("method=slip", "method_options.ssl_weight=-1"), "ssl_weight"),
    (("method=image_ssl", "method_options.negatives=all"), "negatives"),
    (("method=medclip_soft", "method_options.sharpness=0"), "sharpness"),
    (("method=medimp", "method_options.sharpness=3"), "sharpness"),
    (("phase_dropout=1",), "phase_dropout"),
    (("exams_per_patient=0",), "exams_per_patient"),
    (("prompts.wording=poetic",), "wording"),
])
def test_absurd_options_are_refused(overrides, match, tiny_config) -> None:
    with pytest.raises(ConfigError, match=match):
        tiny_config(*overrides)


def test_clinician_wording_reaches_the_prompts(simulated_cohort, tiny_config) -> None:
    dm = PretrainDataModule(simulated_cohort, tiny_config("prompts.wording=clinician"))
    prompts = [p for v in dm.objective.prompts.values() for p in v]
    assert any("mL/min/1.73 m²" in p for p in prompts)
    assert not any("years of age" in p or "fluctuating fluctuations" in p for p in prompts)
    orig = PretrainDataModule(simulated_cohort, tiny_config())
    assert any("years of age" in p for v in orig.objective.prompts.values() for p in v)


def test_earliest_exams(simulated_cohort) -> None:
    cohort = read_cohort(simulated_cohort)
    keys = [(str(p), str(e)) for p, e in cohort.exam_keys()]
    first = earliest_exams(cohort, keys, 1)
    assert len(first) == len({p for p, _ in keys})
    days = cohort.exams.set_index(["patient_id", "exam"])["days_post_transplant"]
    for pid, exam in first:
        mine = [days[k] for k in keys if k[0] == pid]
        assert days[(pid, exam)] == min(mine)
    assert earliest_exams(cohort, keys, 99) == keys


def test_drop_phases_keeps_one_phase() -> None:
    rng = np.random.default_rng(0)
    for _ in range(50):
        m = drop_phases(np.array([True, True, True]), 0.99, rng)
        assert m.sum() >= 1
    assert drop_phases(np.array([False, True, False]), 0.99, rng).tolist() == [False, True, False]


@pytest.fixture
def missing_phase_cohort(simulated_cohort, tmp_path):
    """The simulated cohort with the arterial phase of one exam removed."""
    dst = tmp_path / "cohort"
    shutil.copytree(simulated_cohort, dst, ignore=shutil.ignore_patterns(".medimp_cache"))
    man = pd.read_csv(dst / "manifest.csv", dtype={"patient_id": str})
    row = man[(man["phase"] == "arterial")].iloc[0]
    (dst / row["path"]).unlink()
    man.drop(index=row.name).to_csv(dst / "manifest.csv", index=False)
    return dst, (row["patient_id"], row["exam"])


def test_missing_phase_is_embedded_as_training_saw_it(missing_phase_cohort, tiny_config,
                                                      tmp_path) -> None:
    cohort_dir, key = missing_phase_cohort
    cfg = tiny_config("epochs=1", "phase_mask=channels", "phase_dropout=0.5", "val_fraction=0",
                      f"cache_dir={tmp_path / 'cache'}")
    dm = PretrainDataModule(cohort_dir, cfg, cache_dir=tmp_path / "cache")
    assert dm.in_channels == 6
    dm.setup()
    ds = dm.train_set
    i = ds.base.keys.index(key)
    item = ds[i]
    image = item["image"]
    # the missing arterial phase: zero image channel, mask channel 0, as a dropped phase is
    assert image.shape[0] == 6
    assert torch.count_nonzero(image[1]) == 0 and torch.all(image[4] == 0)
    # phase dropout presents an acquired phase exactly the same way
    seen_dropped = False
    for epoch in range(6):
        ds.set_epoch(epoch)
        for j in range(len(ds)):
            if j == i:
                continue
            x = ds[j]["image"]
            dropped = [c for c in range(3) if torch.all(x[3 + c] == 0)]
            for c in dropped:
                assert torch.count_nonzero(x[c]) == 0
                seen_dropped = True
            assert len(dropped) < 3
    assert seen_dropped
    run = pretrain(cohort_dir, tmp_path / "run", cfg, progress=False)
    table = embed(run, cohort_dir, cache_dir=tmp_path / "cache")
    encoder, prep = load_image_encoder(run)
    raw = ExamDataset(read_cohort(cohort_dir), prep, cache_dir=tmp_path / "cache", keys=[key])[0]
    assert raw["phase_mask"].tolist() == [True, False, True]
    with torch.no_grad():
        want = encoder(encoder_input(raw["image"], raw["phase_mask"], "channels")[None])[0]
    row = table[(table["level"] == "exam") & (table["patient_id"] == key[0])
                & (table["exam"] == key[1])]
    got = row[[f"e{k}" for k in range(want.shape[0])]].to_numpy(dtype=np.float32)[0]
    np.testing.assert_allclose(got, want.numpy(), rtol=1e-5, atol=1e-6)
