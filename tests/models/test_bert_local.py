"""MEDIMP's text encoder set-up: a 12-layer BERT from a local folder with ``first:11`` (as with
Bio_ClinicalBERT), built here with random weights and a small vocab.txt (nothing downloaded)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors import safe_open

_TEXT = ("the kidney donor was high low years of age . patient ' s gfr found to be at medium "
         "very extremely first month two weeks third year check - up creatinine levels "
         "displayed stable unstable steady minor fluctuating marked fluctuations")
WORDS = sorted(set(_TEXT.split(" ")))


def _bert12(folder: Path) -> Path:
    from transformers import BertConfig, BertModel, BertTokenizer

    folder.mkdir(parents=True)
    (folder / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]",
                                                 *WORDS]) + "\n")
    BertTokenizer(str(folder / "vocab.txt"), do_lower_case=True).save_pretrained(folder)
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(WORDS) + 5, hidden_size=16, num_hidden_layers=12,
                         num_attention_heads=2, intermediate_size=32,
                         max_position_embeddings=128)).save_pretrained(folder)
    return folder


def test_12_layer_bert_from_a_folder_with_first_11_freezes_exactly_11(simulated_cohort,
                                                                     tmp_path: Path) -> None:
    from medimp.models.text import create_text_encoder
    from medimp.train import load_config, pretrain

    folder = _bert12(tmp_path / "Bio_ClinicalBERT_like")
    enc = create_text_encoder(str(folder), freeze="first:11")
    assert (enc.num_layers, enc.n_frozen_layers) == (12, 11)
    layers = enc.model.encoder.layer
    assert all(not p.requires_grad for i in range(11) for p in layers[i].parameters())
    assert all(p.requires_grad for p in layers[11].parameters())
    assert not any(p.requires_grad for p in enc.model.embeddings.parameters())

    cfg = load_config(None, {
        "method": "medimp", "image_encoder": {"name": "tiny_cnn_3d",
                                              "kwargs": {"widths": [4, 8, 16]}},
        "embed_dim": 8, "epochs": 1, "batch_size": 8, "preprocess": {"shape": [16, 16, 16]},
        "augment": None, "cache_dir": str(tmp_path / "cache"),
        "text": {"path": str(folder), "freeze": "first:11"}})
    run = pretrain(simulated_cohort, tmp_path / "run", cfg, progress=False)
    before = dict(enc.model.state_dict())
    with safe_open(str(run / "model.safetensors"), "pt") as f:
        text_keys = {k: k.split("model.", 1)[1] for k in f.keys()  # noqa: SIM118 - safe_open is not iterable
                     if k.startswith("text") and "model." in k}
        assert text_keys, "the run exports its text tower"
        changed = {i for k, name in text_keys.items() if name in before
                   and name.startswith("encoder.layer.")
                   and not torch.equal(f.get_tensor(k), before[name])
                   for i in [int(name.split(".")[2])]}
        emb_same = all(torch.equal(f.get_tensor(k), before[name]) for k, name in
                       text_keys.items() if name.startswith("embeddings."))
    assert changed == {11}, f"layers that trained: {sorted(changed)} (only layer 11 may)"
    assert emb_same


def test_first_n_beyond_the_depth_is_an_error(tmp_path: Path) -> None:
    from medimp.models import TextModelError
    from medimp.models.text import create_text_encoder

    folder = _bert12(tmp_path / "bert")
    with pytest.raises(TextModelError, match="12"):
        create_text_encoder(str(folder), freeze="first:13")
