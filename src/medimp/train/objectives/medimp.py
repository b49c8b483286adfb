"""``medimp``: the image vs a text prompt of its exam's clinical facts (MEDIMP's CLIP).

Each exam has a bank of paraphrased prompts (``medimp.prompts.build_prompts``); one is drawn per
sample per step from (seed, step, item index) only, so the draw is the same with any number of
processes or workers and after a resume. The text tower is a pretrained Hugging Face encoder
(offline MiniLM by default) + a projection head; its frozen layers are never stored in
checkpoints nor exported (they are the pretrained model's, found again from its path).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn
from torch.nn.functional import normalize

from medimp._textmodel import default_text_model_path
from medimp.models import ProjectionHead, create_text_encoder
from medimp.prompts import build_prompts, build_prompts_from_tables, exam_words
from medimp.prompts.wording import study_for
from medimp.train.errors import ConfigError, TrainError
from medimp.train.objectives._base import ContrastiveObjective, ItemFields, Key, PretrainData
from medimp.train.objectives._registry import register_objective

if TYPE_CHECKING:
    from lightning.pytorch import Callback

__all__ = ["Medimp", "draw_prompts", "text_model_path"]

# a fixed stream id for validation draws, so the validation loss is comparable between epochs
_VAL_STREAM = 2**31 - 1


def draw_prompts(prompts: list[list[str]], indices: list[int], seed: int, step: int) -> list[str]:
    """One paraphrase per sample, drawn from (seed, step, item index) only.

    Seeded per sample rather than from a global stream, so the draw is the same with any number
    of processes or workers, and after a resume.
    """
    out = []
    for variants, idx in zip(prompts, indices, strict=True):
        if not variants:
            raise ValueError(f"item {idx}: no prompt to draw from")
        rng = np.random.default_rng([seed, step, idx])
        out.append(variants[int(rng.integers(len(variants)))])
    return out


def text_model_path(config: Any) -> str:
    """The text model folder of a config (``text.path``, or the offline MiniLM), checked.

    Raises:
        ConfigError: ``text.path`` is not a Hugging Face model folder.
    """

    if config.text.path is None:
        return str(default_text_model_path())
    path = Path(config.text.path).expanduser()
    if not path.is_dir() or not (path / "config.json").is_file():
        raise ConfigError(f"text.path {config.text.path!r} is not a Hugging Face model folder "
                          "(expected a folder with config.json and weights); give a local model "
                          "folder or leave text.path empty for the offline MiniLM")
    return str(path)


class _Prompts(ItemFields):
    """``prompts``: the exam's paraphrases; ``content_idx``: its clinical-facts id (if masked)."""

    def __init__(self, prompts: dict[Key, list[str]], content: dict[Key, int] | None) -> None:
        self.prompts, self.content = prompts, content

    def __call__(self, index: int, patient_id: str, exam: str) -> dict[str, Any]:
        out: dict[str, Any] = {"prompts": self.prompts[(patient_id, exam)]}
        if self.content is not None:
            out["content_idx"] = self.content[(patient_id, exam)]
        return out


@register_objective
class Medimp(ContrastiveObjective):
    """Image vs text prompt, CLIP (or SigLIP) loss; towers: image + ``text_encoder`` +
    ``text_proj``. Options live in the config's ``text`` group and ``loss.same_content_mask``.
    """

    name = "medimp"
    partner = "text"
    text_tower = True

    def check(self) -> None:
        text_model_path(self.config)

    def architecture(self) -> dict[str, Any]:
        t = self.config.text
        return {"text": {"path": t.path, "pooling": t.pooling, "freeze": t.freeze}}

    # ------------------------------------------------------------------------- data side
    def prepare(self, data: PretrainData) -> None:
        self.prompts = self._load_prompts(data)
        self.content: dict[Key, int] | None = None
        if self.config.loss.same_content_mask:
            self.content = self._content_ids(data)

    def _load_prompts(self, data: PretrainData) -> dict[Key, list[str]]:

        if self.config.prompts.wording == "original":
            df = build_prompts(data.cohort, seed=self.config.seed)
        else:  # a cohort's own bank paraphrases the original templates: the rules bank
            df = build_prompts_from_tables(self.prompt_study(data), data.cohort.exams,
                                           data.cohort.patients, seed=self.config.seed,
                                           keys=data.keys)
        out: dict[Key, list[str]] = {}
        for (pid, exam), grp in df.sort_values("variant").groupby(["patient_id", "exam"],
                                                                  sort=False):
            out[(str(pid), str(exam))] = [str(p) for p in grp["prompt"] if str(p).strip()]
        missing = [k for k in data.keys if not out.get(k)]
        if missing:
            shown = ", ".join(f"patient {p} exam {e}" for p, e in missing[:5])
            raise TrainError(f"{data.cohort_path}: no prompt for {len(missing)} exam(s) "
                             f"({shown}); check exams.csv/patients.csv and study.yaml")
        return out

    def prompt_study(self, data: PretrainData) -> Any:
        """The study whose templates and bins the prompts use (``prompts.wording``)."""

        return study_for(data.cohort.study, self.config.prompts.wording)

    @staticmethod
    def _content_ids(data: PretrainData) -> dict[Key, int]:
        """One id per distinct set of prompt words (the binned facts an exam's prompts state)."""

        ids: dict[tuple, int] = {}
        return {k: ids.setdefault(tuple(sorted(exam_words(data.cohort, *k).items())), len(ids))
                for k in data.keys}

    def unique_prompts(self) -> list[str]:
        """Every distinct prompt of the run (for precomputing a frozen text encoder)."""
        return sorted({p for v in self.prompts.values() for p in v})

    def item_fields(self, data: PretrainData, keys: Sequence[Key]) -> ItemFields:
        return _Prompts(self.prompts, self.content)

    def metadata(self) -> dict[str, Any]:
        return {"text_model_path": text_model_path(self.config)}

    def callbacks(self) -> list[Callback]:
        t = self.config.text
        if t.freeze == "all" and t.cache and t.precompute:
            from medimp.train.callbacks import PrecomputeTextCallback

            return [PrecomputeTextCallback(self.unique_prompts())]
        return []

    # ------------------------------------------------------------------------ model side
    def build_towers(self, embed_dim: int, **tower_args: Any) -> dict[str, nn.Module]:

        t = self.config.text
        enc = create_text_encoder(t.path, pooling=t.pooling, freeze=t.freeze, cache=t.cache)
        return {"text_encoder": enc, "text_proj": ProjectionHead(enc.num_features, embed_dim)}

    def encode_text(self, model: Any, texts: list[str]) -> torch.Tensor:
        """L2-normalised text embeddings in the shared space."""
        hidden = model.text_encoder(list(texts)).to(model.device)
        return normalize(model.text_proj(hidden).float(), dim=-1)

    def embed(self, model: Any, batch: dict[str, Any], stage: str) -> dict[str, torch.Tensor]:
        img = model.encode_image(batch["image"])
        step = model.global_step if stage == "train" else _VAL_STREAM
        idx = [int(i) for i in batch["index"]]
        texts = draw_prompts(batch["prompts"], idx, self.config.seed, step)
        return {"image": img, "text": self.encode_text(model, texts)}

    def lr_scales(self) -> dict[str, float]:
        return {"text_encoder": self.config.optim.text_lr_scale}

    def unsaved_keys(self, model: nn.Module) -> list[str]:
        # the frozen text weights are the pretrained model's: 90 MB per checkpoint for MiniLM,
        # written every epoch, for nothing
        enc = model.text_encoder
        trainable = {n for n, p in enc.named_parameters() if p.requires_grad}
        return [f"text_encoder.{k}" for k in enc.state_dict() if k not in trainable]
