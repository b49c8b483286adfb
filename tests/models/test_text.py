"""Hugging Face text encoder: masked pooling, layer-index freezing, frozen-prefix cache."""

from __future__ import annotations

import json

import pytest
import torch

from medimp._textmodel import default_text_model_path, masked_mean
from medimp.models import TextModelError, create_text_encoder
from medimp.models.text import parse_freeze

SHORT = "The kidney donor was old."
LONG = ("The patient's GFR was very low at the first month check-up, and the creatinine was "
        "high at the third month check-up after the transplant.")
PROMPTS = [SHORT, LONG, "The recipient was a young woman.", SHORT]


def _layer_frozen(enc):
    """Per layer: True if every parameter of that layer is frozen (requires_grad False)."""
    out = []
    for layer in enc.model.encoder.layer:
        flags = {p.requires_grad for p in layer.parameters()}
        assert len(flags) == 1, "a layer is partially frozen"
        out.append(not flags.pop())
    return out


def test_default_model_is_minilm_with_tokenizer():
    enc = create_text_encoder(freeze="all")
    assert enc.num_layers == 6
    assert enc.num_features == 384
    assert enc.tokenizer is not None
    assert enc.source == str(default_text_model_path())
    assert enc([SHORT]).shape == (1, 384)


@pytest.mark.parametrize("n", [0, 1, 3, 5, 6])
def test_first_n_freezes_exactly_n_layers(n):
    enc = create_text_encoder(freeze=f"first:{n}")
    frozen = _layer_frozen(enc)
    assert frozen == [True] * n + [False] * (6 - n)
    assert enc.n_frozen_layers == n
    assert not any(p.requires_grad for p in enc.model.embeddings.parameters())


def test_first_minus_one_is_all_but_last():
    enc = create_text_encoder()  # default "first:-1", MEDIMP's "first11" analogue
    assert _layer_frozen(enc) == [True] * 5 + [False]


def test_freeze_none_all_layernorm():
    none = create_text_encoder(freeze="none", cache=False)
    assert all(p.requires_grad for p in none.parameters())
    frozen = create_text_encoder(freeze="all")
    assert not any(p.requires_grad for p in frozen.parameters())
    ln = create_text_encoder(freeze="layernorm")
    trainable = {n for n, p in ln.named_parameters() if p.requires_grad}
    assert trainable
    assert all(".LayerNorm." in n for n in trainable)
    # 6 layers x 2 LayerNorms + the embeddings' one, weight and bias each
    assert len(trainable) == (6 * 2 + 1) * 2


@pytest.mark.parametrize("spec", ["first:7", "first:-7", "first:x", "first11", "half"])
def test_bad_freeze_specs_are_clear(spec):
    with pytest.raises(TextModelError, match="freeze"):
        parse_freeze(spec, 6)


def test_freeze_more_layers_than_model_names_the_depth():
    with pytest.raises(TextModelError, match="has 6 layers"):
        create_text_encoder(freeze="first:11")


def test_mean_pooling_uses_attention_mask_not_argmax():
    enc = create_text_encoder(freeze="none", cache=False).eval()
    tok = enc.tokenize([SHORT, LONG])
    with torch.no_grad():
        hidden = enc.model(**tok).last_hidden_state
        got = enc([SHORT, LONG])
    assert torch.allclose(got, masked_mean(hidden, tok["attention_mask"]), atol=1e-6)
    naive = hidden.mean(dim=1)  # unmasked mean differs for the padded short prompt
    assert not torch.allclose(got[0], naive[0], atol=1e-3)


def test_cls_pooling_is_first_token():
    enc = create_text_encoder(freeze="all", pooling="cls", cache=False).eval()
    tok = enc.tokenize([SHORT])
    with torch.no_grad():
        assert torch.allclose(enc([SHORT]), enc.model(**tok).last_hidden_state[:, 0])


@pytest.mark.parametrize("freeze,cache", [("none", False), ("first:3", True), ("all", True)])
def test_padding_invariance(freeze, cache):
    enc = create_text_encoder(freeze=freeze, cache=cache).eval()
    with torch.no_grad():
        alone = enc([SHORT])
        enc.cache.clear()
        in_batch = enc([LONG, SHORT])
    assert torch.allclose(alone[0], in_batch[1], atol=1e-5)


@pytest.mark.parametrize("freeze", ["first:0", "first:4", "first:6", "all"])
def test_cache_gives_same_embeddings_and_hits(freeze):
    cached = create_text_encoder(freeze=freeze, cache=True).eval()
    plain = create_text_encoder(freeze=freeze, cache=False).eval()
    with torch.no_grad():
        ref = plain(PROMPTS)
        first = cached(PROMPTS)
        info = cached.cache_info()
        assert (info.misses, info.hits, info.size) == (3, 1, 3)  # SHORT repeats in the batch
        second = cached(PROMPTS[::-1])
    assert torch.allclose(first, ref, atol=1e-5)
    assert torch.allclose(second, ref.flip(0), atol=1e-5)
    assert cached.cache_info().hits == 1 + 4
    assert plain.cache_info().size == 0


def test_cached_prefix_still_trains_the_suffix():
    enc = create_text_encoder(freeze="first:4", cache=True).train()
    enc(PROMPTS).pow(2).sum().backward()
    enc(PROMPTS).pow(2).sum().backward()  # second pass from the cache
    for i, layer in enumerate(enc.model.encoder.layer):
        grads = [p.grad for p in layer.parameters()]
        if i < 4:
            assert all(g is None for g in grads)
        else:
            assert all(g is not None and g.abs().sum() > 0 for g in grads)
    # frozen prefix stays in eval mode (no dropout) so that caching is exact
    assert not enc.model.embeddings.training
    assert not enc.model.encoder.layer[3].training
    assert enc.model.encoder.layer[4].training


def test_state_dict_has_no_duplicates_and_reload_clears_cache():
    enc = create_text_encoder(freeze="all", embed_dim=16)
    keys = list(enc.state_dict())
    assert all(k.startswith(("model.", "proj.")) for k in keys)
    enc([SHORT])
    assert enc.cache_info().size == 1
    enc.load_state_dict(enc.state_dict())
    assert enc.cache_info().size == 0
    assert enc([SHORT]).shape == (1, 16)


def test_encoder_pickles_for_spawned_processes():
    import pickle

    enc = create_text_encoder(freeze="first:4").eval()
    with torch.no_grad():
        ref = enc([SHORT, LONG])
    again = pickle.loads(pickle.dumps(enc))
    assert again.cache_info().size == 2  # the cache travels along, on the CPU
    assert again.cache.missing([SHORT]) == []
    with torch.no_grad():
        assert torch.allclose(again([SHORT, LONG]), ref, atol=1e-6)
    again.load_state_dict(enc.state_dict())  # the copy's hook clears the copy's cache only
    assert again.cache_info().size == 0
    assert enc.cache_info().size == 2


def test_bad_path_names_the_path(tmp_path):
    with pytest.raises(TextModelError, match=str(tmp_path / "nowhere")):
        create_text_encoder(tmp_path / "nowhere")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(TextModelError, match=str(broken)):
        create_text_encoder(broken)


def test_bad_inputs():
    enc = create_text_encoder(freeze="all")
    with pytest.raises(TextModelError, match="non-empty list"):
        enc([])
    with pytest.raises(TextModelError, match="pooling"):
        create_text_encoder(pooling="max")


def test_clip_text_from_scratch():
    from medimp.models.text import create_clip_text_encoder

    torch.manual_seed(0)
    enc = create_clip_text_encoder(width=32, layers=2, heads=4, embed_dim=8).eval()
    assert len(enc.tokenizer) == 30522  # the default model's vocabulary
    with torch.no_grad():
        alone = enc([SHORT])
        batch = enc([LONG, SHORT])
    assert batch.shape == (2, 8)
    assert torch.allclose(alone[0], batch[1], atol=1e-5)  # padding-invariant
    enc.train()
    enc(PROMPTS).sum().backward()
    assert enc.token_embedding.weight.grad is not None
    with pytest.raises(TextModelError, match="tokenizer"):
        create_clip_text_encoder(tokenizer_path="/nonexistent/tokenizer")


def test_cache_filled_under_bf16_autocast_serves_fp32_steps():
    enc = create_text_encoder(freeze="first:4").eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        low = enc([SHORT, LONG])
    assert enc.cache.get_many([SHORT])[0].dtype == torch.float32
    with torch.no_grad():
        full = enc([SHORT, LONG])  # suffix in fp32 on cached states: no dtype clash
    assert full.dtype == torch.float32
    assert torch.nn.functional.cosine_similarity(low.float(), full).min() > 0.99
