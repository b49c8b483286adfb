"""Shared by the benchmark scripts: write a result as JSON (atomically) and print it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from medimp._io import atomic_write_text

RESULTS = Path(__file__).resolve().parent / "results"


def bert_folder(out: Path, layers: int = 12) -> Path:
    """A BERT-base-sized encoder (hidden 768, 12 heads) with random weights, saved as a local
    model folder; nothing is downloaded (the tokenizer is MiniLM's packaged one: the same
    uncased BERT vocabulary). MEDIMP's text encoder had this shape (Bio_ClinicalBERT)."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from medimp._textmodel import default_text_model_path

    if (out / "config.json").is_file():
        return out
    torch.manual_seed(0)
    cfg = BertConfig(hidden_size=768, num_hidden_layers=layers, num_attention_heads=12,
                     intermediate_size=3072)
    BertModel(cfg).save_pretrained(out)
    AutoTokenizer.from_pretrained(default_text_model_path()).save_pretrained(out)
    return out


def write_result(name: str, result: dict[str, Any]) -> Path:
    """Write ``results/<name>.json`` and print the result as an aligned key/value table."""
    out = RESULTS / f"{name}.json"
    atomic_write_text(out, json.dumps(result, indent=2) + "\n")
    width = max(map(len, result))
    for k, v in result.items():
        print(f"{k:<{width}}  {v}")
    print(f"-> {out}")
    return out
