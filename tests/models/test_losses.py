"""CLIP and SigLIP losses: math against manual computations, patient masking."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from medimp.models import ClipLoss, ModelError, ProjectionHead, SigLipLoss


def _manual_clip(a, b, scale, groups=None):
    a = a / a.norm(dim=1, keepdim=True)
    b = b / b.norm(dim=1, keepdim=True)
    n = a.shape[0]
    sims = scale * (a @ b.T)
    total = 0.0
    for direction in (sims, sims.T):
        for i in range(n):
            keep = [j for j in range(n)
                    if j == i or groups is None or groups[j] != groups[i]]
            row = direction[i, keep]
            pos = keep.index(i)
            total += -(row[pos] - torch.logsumexp(row, dim=0))
    return total / (2 * n)


def test_clip_loss_matches_manual_without_groups():
    torch.manual_seed(0)
    a, b = torch.randn(6, 5), torch.randn(6, 5)
    loss = ClipLoss(init_temperature=0.1)
    assert torch.allclose(loss(a, b), _manual_clip(a, b, 10.0), atol=1e-5)


def test_clip_loss_masks_same_patient_pairs():
    torch.manual_seed(1)
    a, b = torch.randn(6, 5), torch.randn(6, 5)
    groups = torch.tensor([0, 0, 1, 2, 2, 2])
    loss = ClipLoss(init_temperature=0.1)
    masked = loss(a, b, groups)
    assert torch.allclose(masked, _manual_clip(a, b, 10.0, groups.tolist()), atol=1e-5)
    assert not torch.allclose(masked, loss(a, b), atol=1e-3)  # masking really changes it


def test_duplicated_patient_is_not_a_negative():
    # Rows 0..3 are four patients. Adding a second exam of patient 0 (any features) must not
    # change the loss terms of the other patients' rows: it is masked out as a negative of row 0
    # and row 0 is masked out of its row.
    torch.manual_seed(2)
    a, b = torch.randn(4, 8), torch.randn(4, 8)
    loss = ClipLoss(init_temperature=0.07)
    extra_a, extra_b = torch.randn(1, 8), torch.randn(1, 8)
    groups = torch.tensor([0, 1, 2, 3, 0])
    big_a, big_b = torch.cat([a, extra_a]), torch.cat([b, extra_b])
    logits = loss.logits(big_a, big_b).masked_fill(
        (groups[:, None] == groups[None, :]) & ~torch.eye(5, dtype=torch.bool), float("-inf"))
    row0 = -F.log_softmax(logits[0], dim=0)[0]
    # The same row computed without the duplicate, plus the extra as an *other* patient's
    # negative, would differ; with masking row 0 sees exactly its 4-patient batch + nothing else.
    small = -F.log_softmax(loss.logits(a, b)[0], dim=0)[0]
    assert torch.allclose(row0, small, atol=1e-6)
    # and the full masked loss equals the manual masked computation
    assert torch.allclose(loss(big_a, big_b, groups),
                          _manual_clip(big_a, big_b, loss.scale.item(), groups.tolist()),
                          atol=1e-5)


def test_logit_scale_clamped_at_100():
    loss = ClipLoss(init_temperature=0.07)
    assert math.isclose(loss.logit_scale.item(), math.log(1 / 0.07), rel_tol=1e-6)
    with torch.no_grad():
        loss.logit_scale.fill_(10.0)
    assert math.isclose(loss.scale.item(), 100.0, rel_tol=1e-5)
    with pytest.raises(ModelError):
        ClipLoss(init_temperature=0.001)


#: central differences on a loss computed in float32: a step well above its rounding
_FD = {"eps": 1e-3, "atol": 2e-3, "rtol": 1e-2}


def _call(loss, params, *args):
    return torch.func.functional_call(loss, params, args)


def test_clip_loss_gradients_match_finite_differences():
    """Analytic gradients (embeddings of both towers and the temperature, with patient masking)
    equal central finite differences (the loss computes in float32, hence the step and
    tolerances); at the clamp the temperature stops learning."""
    torch.manual_seed(0)
    loss = ClipLoss().double()
    a = torch.randn(5, 3, dtype=torch.double, requires_grad=True)
    b = torch.randn(5, 3, dtype=torch.double, requires_grad=True)
    log_scale = torch.tensor(math.log(1 / 0.07), dtype=torch.double, requires_grad=True)
    groups = torch.tensor([0, 0, 1, 2, 3])
    assert torch.autograd.gradcheck(
        lambda x, y, t: _call(loss, {"logit_scale": t}, x, y, groups), (a, b, log_scale),
        **_FD)
    clamped = torch.tensor(10.0, dtype=torch.double, requires_grad=True)  # e^10 > 100
    _call(loss, {"logit_scale": clamped}, a, b).backward()
    assert clamped.grad.item() == 0.0 and a.grad.abs().sum() > 0
    # one small step against the gradient lowers the loss
    before = loss(a, b).item()
    with torch.no_grad():
        lower = loss(a - 1e-3 * a.grad.sign(), b).item()
    assert lower < before


def test_siglip_matches_manual_and_masks():
    torch.manual_seed(3)
    a, b = torch.randn(5, 4), torch.randn(5, 4)
    groups = torch.tensor([7, 7, 8, 9, 9])
    loss = SigLipLoss(init_scale=10.0, init_bias=-10.0)
    an, bn = F.normalize(a, dim=1), F.normalize(b, dim=1)
    manual = 0.0
    for i in range(5):
        for j in range(5):
            if i != j and groups[i] == groups[j]:
                continue
            z = 1.0 if i == j else -1.0
            manual += -F.logsigmoid(torch.tensor(z) * (10.0 * an[i] @ bn[j] - 10.0))
    assert torch.allclose(loss(a, b, groups), manual / 5, atol=1e-5)
    assert not torch.allclose(loss(a, b, groups), loss(a, b), atol=1e-4)
    # gradients of both towers, the scale and the bias equal finite differences
    ad, bd = (x.double().requires_grad_(True) for x in (a, b))
    params = {k: v.detach().double().requires_grad_(True)
              for k, v in loss.named_parameters()}
    assert set(params) == {"logit_scale", "logit_bias"}
    assert torch.autograd.gradcheck(
        lambda x, y, s, t: _call(loss, {"logit_scale": s, "logit_bias": t}, x, y, groups),
        (ad, bd, params["logit_scale"], params["logit_bias"]), **_FD)


def test_bad_shapes_are_clear():
    with pytest.raises(ModelError, match="same shape"):
        ClipLoss()(torch.randn(3, 4), torch.randn(3, 5))
    with pytest.raises(ModelError, match="vector of 3 patient ids"):
        ClipLoss()(torch.randn(3, 4), torch.randn(3, 4), torch.tensor([0, 1]))
    with pytest.raises(ModelError, match="at least 2"):
        SigLipLoss()(torch.randn(1, 4), torch.randn(1, 4))


def test_projection_heads():
    x = torch.randn(3, 10)
    lin = ProjectionHead(10, 4)
    mlp = ProjectionHead(10, 4, kind="mlp", normalize=True)
    assert lin(x).shape == (3, 4)
    assert torch.allclose(mlp(x).norm(dim=1), torch.ones(3), atol=1e-5)
    assert mlp.num_features == 4
    with pytest.raises(ModelError, match="kind"):
        ProjectionHead(10, 4, kind="conv")


def test_exclude_masks_extra_pairs_like_groups():
    # An exclude matrix that equals "same group" gives the group-masked loss; one that flags a
    # different, non-transitive set of pairs masks exactly those pairs (both directions).
    torch.manual_seed(3)
    a, b = torch.randn(5, 4), torch.randn(5, 4)
    groups = torch.tensor([0, 0, 1, 2, 2])
    same = groups[:, None] == groups[None, :]
    for loss in (ClipLoss(init_temperature=0.1), SigLipLoss()):
        assert torch.allclose(loss(a, b, exclude=same), loss(a, b, groups), atol=1e-6)
    clip = ClipLoss(init_temperature=0.1)
    exclude = torch.zeros(5, 5, dtype=torch.bool)
    exclude[0, 3] = exclude[3, 0] = True
    logits = clip.logits(a, b).masked_fill(exclude, float("-inf"))
    target = torch.arange(5)
    manual = 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))
    assert torch.allclose(clip(a, b, exclude=exclude), manual, atol=1e-6)
    assert not torch.allclose(clip(a, b, exclude=exclude), clip(a, b), atol=1e-4)
    with pytest.raises(ModelError, match="exclude"):
        clip(a, b, exclude=torch.zeros(4, 4, dtype=torch.bool))
