"""Losses beyond MEDIMP (docs/train.md): NT-Xent, soft (MedCLIP) targets, clinical-fact
similarity."""

from __future__ import annotations

import math

import pytest
import torch

from medimp.models import (
    ClipLoss,
    ModelError,
    NTXentLoss,
    SoftClipLoss,
    fact_similarity,
    nt_xent_loss,
    soft_clip_loss,
    soft_targets,
)


def _ce(pos: float, negs: list[float]) -> float:
    return -(pos - math.log(math.exp(pos) + sum(math.exp(n) for n in negs)))


def test_nt_xent_matches_a_hand_computed_example():
    # two samples, two views; rows r0=(1,0), r1=(0,1) (view 1), r2=(.6,.8), r3=(0,-1) (view 2)
    z1 = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    z2 = torch.tensor([[0.6, 0.8], [0.0, -1.0]])
    expected = (_ce(0.6, [0.0, 0.0])        # r0: positive r2; negatives r1 (within view), r3
                + _ce(-1.0, [0.0, 0.8])     # r1: positive r3; negatives r0, r2
                + _ce(0.6, [0.8, -0.8])     # r2: positive r0; negatives r1, r3 (within view)
                + _ce(-1.0, [0.0, -0.8])) / 4  # r3: positive r1; negatives r0, r2
    got = nt_xent_loss(z1, z2, scale=1.0)
    assert got.item() == pytest.approx(expected, abs=1e-6)
    # the cross-view CLIP loss lacks the within-view negatives: a different number
    clip = ClipLoss(init_temperature=1.0, learnable=False)(z1, z2)
    assert abs(clip.item() - expected) > 1e-2


def test_nt_xent_has_2n_minus_2_negatives_and_masks_patients():
    torch.manual_seed(0)
    z1, z2 = torch.randn(5, 8), torch.randn(5, 8)
    # identical embeddings everywhere: every row's softmax is uniform over its 2N-2 + 1 columns
    same = torch.ones(5, 8)
    assert nt_xent_loss(same, same, 1.0).item() == pytest.approx(math.log(2 * 5 - 1), abs=1e-5)
    # patient 0 has rows 0 and 1: each loses the other's 2 views as negatives -> 2N-4 left
    groups = torch.tensor([0, 0, 1, 2, 3])
    per = nt_xent_loss(same, same, 1.0, groups)
    expected = (4 * math.log(2 * 5 - 3) + 6 * math.log(2 * 5 - 1)) / 10
    assert per.item() == pytest.approx(expected, abs=1e-5)
    loss = NTXentLoss(init_temperature=0.1)
    out = loss(z1, z2, groups)
    out.backward()
    assert torch.isfinite(out) and loss.logit_scale.grad is not None
    with pytest.raises(ModelError, match="exclude"):
        loss(z1, z2, exclude=torch.zeros(5, 5, dtype=torch.bool))


def test_fact_similarity_counts_neighbouring_bins_and_missing_values():
    nan = float("nan")
    # variables: gfr position (ordinal, 5 bins -> 0, .25, ...), donor age category code
    facts = torch.tensor([[0.0, 1.0], [0.25, 1.0], [1.0, 0.0], [nan, 1.0], [nan, nan]])
    sim = fact_similarity(facts, ordinal=torch.tensor([True, False]))
    assert sim[0, 0] == 1.0
    assert sim[0, 1].item() == pytest.approx((0.75 + 1.0) / 2)  # neighbouring gfr bin
    assert sim[0, 2].item() == pytest.approx(0.0)                # opposite on both
    assert sim[0, 3].item() == pytest.approx(1.0)                # only age known for both
    assert sim[0, 4].item() == 0.0 and sim[4, 4].item() == 0.0   # nothing known in common
    assert torch.allclose(sim, sim.T)


def test_soft_clip_with_identity_targets_is_clip_and_same_facts_are_positives():
    torch.manual_seed(1)
    a, b = torch.randn(6, 5), torch.randn(6, 5)
    clip = ClipLoss(init_temperature=0.1)
    logits = clip.logits(a, b)
    assert soft_clip_loss(logits, torch.eye(6)).item() == pytest.approx(clip(a, b).item(),
                                                                        abs=1e-5)
    soft = SoftClipLoss(init_temperature=0.1)
    assert soft(a, b).item() == pytest.approx(clip(a, b).item(), abs=1e-6)  # no similarity
    # exams 0 and 1 state the same facts: the target of row 0 splits between columns 0 and 1
    sim = torch.eye(6)
    sim[0, 1] = sim[1, 0] = 1.0
    t = soft_targets(sim, sharpness=50.0)
    assert t[0, 0].item() == pytest.approx(0.5, abs=1e-6)
    assert t[0, 1].item() == pytest.approx(0.5, abs=1e-6)
    # image 0 leaning towards text 1 (same facts) or text 2 (other facts): plain CLIP cannot
    # tell the two apart, the soft targets prefer the first
    texts = torch.eye(6)

    def leaning(k: int) -> torch.Tensor:
        x = torch.eye(6)
        x[0] = x[0] + 0.8 * x[k]
        return x

    plain = ClipLoss(init_temperature=0.1)
    assert plain(leaning(1), texts).item() == pytest.approx(plain(leaning(2), texts).item())
    softl = SoftClipLoss(sharpness=50.0, init_temperature=0.1)
    assert (softl(leaning(1), texts, similarity=sim).item()
            < softl(leaning(2), texts, similarity=sim).item() - 0.1)


def test_soft_clip_masks_patients_and_checks_shapes():
    torch.manual_seed(2)
    a, b = torch.randn(4, 3), torch.randn(4, 3)
    soft = SoftClipLoss(init_temperature=0.1)
    sim = torch.rand(4, 4)
    sim = (sim + sim.T) / 2
    groups = torch.tensor([0, 0, 1, 2])
    out = soft(a, b, groups, similarity=sim)
    assert torch.isfinite(out)
    # whatever the similarity between the two exams of patient 0, it does not enter the loss
    sim2 = sim.clone()
    sim2[0, 1] = sim2[1, 0] = 1.0
    assert soft(a, b, groups, similarity=sim2).item() == pytest.approx(out.item(), abs=1e-6)
    with pytest.raises(ModelError, match="similarity"):
        soft(a, b, similarity=torch.rand(3, 3))
    with pytest.raises(ModelError, match="sharpness"):
        SoftClipLoss(sharpness=0)
