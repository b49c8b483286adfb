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


def add_setup_args(ap: Any, patients: int = 16, work: str = "medimp-bf16") -> None:
    """The options shared by the training-step benchmarks (bf16_nan.py, versus_original.py)."""
    import tempfile

    ap.add_argument("--patients", type=int, default=patients)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / work)


def bert_and_cohort(work: Path, patients: int, shape: tuple[int, int, int]) -> tuple[Path, Path]:
    """The BERT-sized text encoder folder and a simulated cohort in ``work``, both kept there
    and reused by the next run (the cohort's name holds its size and shape)."""
    from medimp.simulate import simulate_cohort

    work.mkdir(parents=True, exist_ok=True)
    cohort = work / f"cohort{patients}_{'x'.join(map(str, shape))}"
    if not (cohort / "manifest.csv").is_file():
        simulate_cohort(cohort, patients, shape=tuple(shape), seed=0, overwrite=True, workers=1,
                        progress=False)
    return bert_folder(work / "bert12"), cohort


def write_result(name: str, result: dict[str, Any]) -> Path:
    """Write ``results/<name>.json`` and print the result as an aligned key/value table."""
    out = RESULTS / f"{name}.json"
    atomic_write_text(out, json.dumps(result, indent=2) + "\n")
    width = max(map(len, result))
    for k, v in result.items():
        print(f"{k:<{width}}  {v}")
    print(f"-> {out}")
    return out
