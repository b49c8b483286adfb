"""Schedule, paraphrase draw, patient split and patient-interleaved sampling."""

from __future__ import annotations

import math

import pytest

from medimp.train import TrainError
from medimp.train.datamodule import PatientInterleavedSampler, split_patients
from medimp.train.module import WarmupCosine
from medimp.train.objectives.medimp import draw_prompts


def test_warmup_then_cosine() -> None:
    f = WarmupCosine(warmup=4, total=12)
    assert [f(s) for s in range(4)] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert f(4) == pytest.approx(1.0)
    assert f(8) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))
    assert f(12) == pytest.approx(0.0)
    assert all(f(s) >= f(s + 1) for s in range(4, 12))
    assert WarmupCosine(0, 10)(0) == pytest.approx(1.0)


def test_paraphrase_draw_is_seeded_per_sample_and_step() -> None:
    prompts = [[f"p{i} v{v}" for v in range(5)] for i in range(6)]
    idx = list(range(6))
    a = draw_prompts(prompts, idx, seed=0, step=3)
    assert a == draw_prompts(prompts, idx, seed=0, step=3)
    # the same sample gets the same draw whether it comes alone or in a batch
    assert draw_prompts(prompts[2:3], [2], seed=0, step=3) == a[2:3]
    steps = [tuple(draw_prompts(prompts, idx, seed=0, step=s)) for s in range(20)]
    assert len(set(steps)) > 10  # draws change from step to step
    for i, t in enumerate(a):
        assert t.startswith(f"p{i} ")
    drawn = {draw_prompts(prompts[:1], [0], 0, s)[0] for s in range(200)}
    assert drawn == set(prompts[0])  # every paraphrase gets drawn
    with pytest.raises(ValueError, match="no prompt"):
        draw_prompts([[]], [0], 0, 0)


def test_split_is_by_patient_and_seeded() -> None:
    pats = [f"P{i:02d}" for i in range(20)]
    tr, va = split_patients(pats, 0.2, seed=1)
    assert len(va) == 4 and not set(tr) & set(va) and sorted(tr + va) == pats
    assert split_patients(pats, 0.2, seed=1) == (tr, va)
    assert split_patients(pats, 0.2, seed=2) != (tr, va)
    assert split_patients(pats, 0.0, seed=1) == (pats, [])
    # tiny cohorts keep at least 2 training patients
    tr3, va3 = split_patients(pats[:3], 0.5, seed=0)
    assert len(tr3) == 2 and len(va3) == 1
    with pytest.raises(TrainError, match="at least 2"):
        split_patients(["P1", "P1"], 0.2, seed=0)


def test_interleaved_sampler_separates_patients() -> None:
    groups = [p for p in range(10) for _ in range(4)]  # 10 patients x 4 exams
    s = PatientInterleavedSampler(groups, seed=0)
    order = list(s)
    assert sorted(order) == list(range(40)) and len(s) == 40
    # within each round of 10 the patients are distinct, so batches of <=10 inside a round are
    for r in range(4):
        rnd = [groups[i] for i in order[10 * r:10 * r + 10]]
        assert len(set(rnd)) == 10
    s.set_epoch(1)
    assert list(s) != order and sorted(s) == list(range(40))
    s.set_epoch(0)
    assert list(s) == order  # a function of (seed, epoch) only: exact after a resume
    fixed = PatientInterleavedSampler(groups, seed=0, fixed=True)
    first = list(fixed)
    fixed.set_epoch(5)
    assert list(fixed) == first


def test_text_layers_get_their_own_learning_rate(tiny_config) -> None:
    from medimp.train.module import PretrainModule, param_groups

    cfg = tiny_config("optim.lr=0.001", "optim.text_lr_scale=0.1")
    module = PretrainModule(cfg, in_channels=3)
    groups = param_groups(module, cfg.optim)
    text_ids = {id(p) for n, p in module.named_parameters()
                if n.startswith("text_encoder.") and p.requires_grad}
    assert text_ids, "the default freeze leaves the last text layer trainable"
    seen = set()
    for g in groups:
        ids = {id(p) for p in g["params"]}
        seen |= ids
        assert ids <= text_ids or not ids & text_ids  # a group is all-text or no-text
        assert g["lr"] == pytest.approx(1e-4 if ids <= text_ids else 1e-3)
    trainable = {id(p) for p in module.parameters() if p.requires_grad}
    assert seen == trainable  # every trainable parameter is in exactly one group
    assert sum(len(g["params"]) for g in groups) == len(trainable)
