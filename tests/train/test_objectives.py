"""The objective registry: a new objective is one class in one file, trained through pretrain().

The toy objective below lives only in this test file: registering it is all it takes for the
config, the data module, the Lightning module, the checkpoints and the export to run it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from pydantic import BaseModel, ConfigDict, Field
from safetensors.torch import load_file
from torch import nn
from torch.nn.functional import normalize

from medimp.train import ConfigError, embed, load_run_info, load_text_tower, pretrain
from medimp.train.objectives import (
    ContrastiveObjective,
    ItemFields,
    Objective,
    PretrainData,
    create_objective,
    get_objective,
    list_objectives,
    register_objective,
)

BUILTIN = ["image_ssl", "medimp", "random_init", "tabular_clip"]


class _ExamIds(ItemFields):
    def __init__(self, ids: dict[str, int]) -> None:
        self.ids = ids

    def __call__(self, index: int, patient_id: str, exam: str) -> dict[str, Any]:
        return {"exam_id": self.ids[exam]}


class _ToyOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    init_std: float = Field(0.02, gt=0, description="Std of the exam embedding table.")


@register_objective
class ExamClip(ContrastiveObjective):
    """Toy: the image vs a learned embedding of its exam's name (D15, M3, ...)."""

    name = "toy_exam_clip"
    partner = "exam"
    Options = _ToyOptions

    def prepare(self, data: PretrainData) -> None:
        self.exams = sorted({e for _, e in data.keys})

    def item_fields(self, data: PretrainData, keys: Sequence[tuple[str, str]]) -> ItemFields:
        return _ExamIds({e: i for i, e in enumerate(self.exams)})

    def tower_args(self) -> dict[str, Any]:
        return {"n_exams": len(self.exams)}

    def metadata(self) -> dict[str, Any]:
        return {"exams": self.exams}

    def build_towers(self, embed_dim: int, n_exams: int = 0, **_: Any) -> dict[str, nn.Module]:
        table = nn.Embedding(n_exams, embed_dim)
        nn.init.normal_(table.weight, std=self.options.init_std)
        return {"exam_table": table}

    def embed(self, model: Any, batch: dict[str, Any], stage: str) -> dict[str, torch.Tensor]:
        return {"image": model.encode_image(batch["image"]),
                "exam": normalize(model.exam_table(batch["exam_id"]).float(), dim=-1)}


def test_builtin_objectives_are_registered() -> None:
    assert set(BUILTIN) <= set(list_objectives())
    assert list_objectives() == sorted(list_objectives())
    for name in BUILTIN:
        assert get_objective(name).name == name
    assert get_objective("medimp").text_tower
    assert not get_objective("random_init").trains
    assert get_objective("image_ssl").needs_augmentation


def test_unknown_method_lists_the_registered_ones() -> None:
    from medimp.train import load_config

    with pytest.raises(ConfigError, match=r"unknown method 'dino'; registered objectives: "
                       r"image_ssl, medclip_soft, medimp, random_init, slip, tabular_clip"):
        load_config(None, ["method=dino"])
    with pytest.raises(ConfigError, match="unknown method"):
        get_objective("dino")


def test_method_options_are_the_objective_s() -> None:
    from medimp.train import load_config

    cfg = load_config(None, {"method": "toy_exam_clip", "method_options": {"init_std": 0.5}})
    assert create_objective(cfg.method, cfg).options.init_std == 0.5
    with pytest.raises(ConfigError, match=r"method_options of 'toy_exam_clip': init_sd: Extra"):
        load_config(None, {"method": "toy_exam_clip", "method_options": {"init_sd": 0.5}})
    with pytest.raises(ConfigError, match=r"method_options of 'medimp'"):
        load_config(None, {"method_options": {"anything": 1}})


def test_registering_needs_a_free_name() -> None:
    with pytest.raises(ConfigError, match="already registered"):
        register_objective(type("Other", (Objective,), {"name": "medimp"}))
    with pytest.raises(ConfigError, match="give it a name"):
        register_objective(type("Nameless", (Objective,), {}))
    assert register_objective(ExamClip) is ExamClip  # registering the same class again is fine


def test_toy_objective_trains_through_the_public_api(simulated_cohort, tiny_config,
                                                     tmp_path) -> None:
    cfg = tiny_config("method=toy_exam_clip", "epochs=2", "method_options.init_std=0.1",
                      "stop_after_epochs=1")
    run = pretrain(simulated_cohort, tmp_path / "toy", cfg, progress=False)
    info = load_run_info(run)
    assert info["method"] == "toy_exam_clip"
    exams = sorted(pd.read_csv(simulated_cohort / "exams.csv")["exam"].unique())
    assert info["exams"] == exams  # the objective's metadata reached model.json
    hist = pd.read_csv(run / "history.csv")
    assert len(hist) == 1 and np.isfinite(hist["train_loss"]).all()
    state = load_file(run / "model.safetensors")
    assert state["exam_table.weight"].shape == (len(exams), 16)
    assert "loss_fn.logit_scale" in state
    # the resume checkpoint names the objective's architecture, and the run embeds
    resumed = pretrain(simulated_cohort, run, tiny_config("method=toy_exam_clip", "epochs=2",
                                                          "method_options.init_std=0.1"),
                       resume=True, progress=False)  # stop_after_epochs is a run-time option
    assert load_run_info(resumed)["epochs_trained"] == 2
    assert (embed(run, simulated_cohort)["level"] == "exam").any()
    with pytest.raises(ValueError, match="no text tower"):
        load_text_tower(run)


def test_no_method_name_comparison_outside_objectives() -> None:
    """The trainer never asks which objective it runs: the objectives answer."""
    root = Path(__file__).resolve().parents[2]
    names = "|".join(BUILTIN)
    pattern = re.compile(rf"""(==|!=|\bin)\s*\(?\s*["']({names})["']|["']({names})["']\s*(==|!=)""")
    hits = []
    files = [*(root / "src" / "medimp").rglob("*.py"), *(root / "benchmarks").glob("*.py")]
    for path in sorted(files):
        rel = path.relative_to(root)
        if "objectives" in rel.parts:
            continue
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if pattern.search(line):
                hits.append(f"{rel}:{n}: {line.strip()}")
    assert not hits, "\n".join(hits)
