"""The contract of a pretraining objective, and the shared contrastive pair objective.

An objective owns everything that differs between pretraining methods:

* its options (``Options``, validated from the config's ``method_options``) and the extra
  architecture keys a resume must match (:meth:`Objective.architecture`);
* the data it reads besides the images (prompts, clinical features, ...), prepared once per run
  before any model is built (:meth:`Objective.prepare`), and the extra fields of each batch item
  (:meth:`Objective.item_fields`);
* whether it needs augmentation (``needs_augmentation``), whether it trains at all (``trains``);
* its towers besides the shared image tower, and its loss module (:meth:`Objective.build`);
* how a batch becomes embeddings (:meth:`Objective.embed`) and how embeddings become a loss
  (:meth:`Objective.loss`);
* what ``model.json`` records about it (:meth:`Objective.metadata`).

The trainer (``PretrainModule``, ``PretrainDataModule``, ``pretrain``) calls these hooks and
never asks which objective it runs.

``embed`` and ``loss`` are separate on purpose: ``embed`` is the forward pass of the towers on
(any slice of) a batch, ``loss`` sees only the embeddings of the whole batch (plus the batch's
non-tensor fields, e.g. patient ids). A gradient cache can therefore embed sub-batches without
a graph, take the loss and its gradient with respect to the embeddings, then re-embed each
sub-batch with a graph and back-propagate those gradients, without knowing the objective.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from pydantic import BaseModel, ConfigDict
from torch import nn

from medimp.models import ClipLoss, SigLipLoss
from medimp.models.distributed import is_distributed

if TYPE_CHECKING:
    from lightning.pytorch import Callback

    from medimp.train.config import PretrainConfig

__all__ = [
    "ContrastiveObjective",
    "ItemFields",
    "NoOptions",
    "Objective",
    "PretrainData",
    "make_contrastive_loss",
]

Key = tuple[str, str]


class NoOptions(BaseModel):
    """An objective without options of its own (``method_options`` must be empty)."""

    model_config = ConfigDict(extra="forbid")


@dataclass
class PretrainData:
    """What the data module read, handed to :meth:`Objective.prepare` and ``item_fields``.

    Attributes:
        cohort: the ``medimp.data.Cohort``.
        cohort_path: its folder (for error messages).
        keys: every (patient_id, exam) with images, training and validation.
        train_keys: the training split's keys (fit statistics on these only).
        preprocess: the data stage's ``PreprocessConfig``.
        augment: the data stage's ``AugmentConfig`` (None: no augmentation).
        cache_dir: preprocessed-volume cache folder (None: the data stage's default).
        seed: the run's seed.
        memory: the run's in-memory layer of preprocessed exams (shared by its datasets), or
            None (medimp.data.ExamDataset's ``memory``).
    """

    cohort: Any
    cohort_path: Path
    keys: list[Key]
    train_keys: list[Key]
    preprocess: Any
    augment: Any
    cache_dir: Path | None
    seed: int
    memory: dict[Any, Any] | None = None

    def exam_dataset(self, keys: Sequence[Key], *, augment: bool, seed: int) -> Any:
        """A ``medimp.data.ExamDataset`` of ``keys`` (e.g. a second augmented view)."""
        from medimp.data import ExamDataset

        return ExamDataset(self.cohort, self.preprocess, cache_dir=self.cache_dir,
                           augment=self.augment if augment else None, seed=seed, keys=list(keys),
                           memory=self.memory)


class ItemFields:
    """The extra fields of one split's batch items; this base adds none.

    ``__call__`` returns a mapping merged into the item; tensors are stacked, ints become a
    long tensor, anything else stays a list (see ``medimp.train.datamodule.collate``).
    """

    def __call__(self, index: int, patient_id: str, exam: str) -> dict[str, Any]:
        return {}

    def set_epoch(self, epoch: int) -> None:
        """The training epoch, for fields drawn at random per (seed, epoch, item)."""


class Objective:
    """A pretraining objective; subclass it and register it with ``@register_objective``.

    Class attributes:
        name: the ``method`` that selects it (set by ``register_objective``).
        trains: False for an objective that exports the encoder untrained (``random_init``).
        needs_augmentation: non-empty: why augmentation is required (e.g. "two different
            views of an exam"); validation batches are then augmented too.
        text_tower: the exported model has a text tower (``load_text_tower`` works).
        Options: pydantic model of the objective's own options (``method_options``).

    One instance serves the data side of a run (``check``, ``prepare``, ``item_fields``,
    ``tower_args``, ``metadata``, ``callbacks``) and another, built by ``PretrainModule`` from
    the config alone, its model side (``build``, ``embed``, ``loss``, ``lr_scales``,
    ``unsaved_keys``): keep model-side hooks free of data-side state.
    """

    name: ClassVar[str] = ""
    trains: ClassVar[bool] = True
    needs_augmentation: ClassVar[str] = ""
    text_tower: ClassVar[bool] = False
    Options: ClassVar[type[BaseModel]] = NoOptions

    def __init__(self, config: PretrainConfig) -> None:
        self.config = config
        self.options = self.Options.model_validate(config.method_options)

    # ------------------------------------------------------------- before any data is read
    def check(self) -> None:
        """Fail early (``ConfigError``) on options this objective cannot run with."""

    def architecture(self) -> dict[str, Any]:
        """Extra options that fix the shapes of the weights (must match to resume or load)."""
        return {}

    # ------------------------------------------------------------------------- data side
    def prepare(self, data: PretrainData) -> None:
        """Read and check what the objective needs besides the images (once per run)."""

    def item_fields(self, data: PretrainData, keys: Sequence[Key]) -> ItemFields:
        """The extra fields of the batch items of one split (``keys`` in item order)."""
        return ItemFields()

    def tower_args(self) -> dict[str, Any]:
        """Sizes the towers take from the data (passed to :meth:`build`; JSON-able)."""
        return {}

    def metadata(self) -> dict[str, Any]:
        """Extra entries of ``model.json`` (JSON-able)."""
        return {}

    def callbacks(self) -> list[Callback]:
        """Extra Lightning callbacks of the run."""
        return []

    # ------------------------------------------------------------------------ model side
    def build(self, embed_dim: int, **tower_args: Any) -> dict[str, nn.Module]:
        """The towers besides the image tower, and the loss module, by attribute name.

        ``tower_args`` are :meth:`tower_args`' sizes plus ``image_features``, the image
        encoder's feature size. The modules are registered on the ``PretrainModule`` in this
        order under these names, which are also the prefixes of their weights in checkpoints
        and ``model.safetensors``.
        """
        return {}

    def embed(self, model: Any, batch: dict[str, Any], stage: str) -> dict[str, torch.Tensor]:
        """Embeddings of a batch (or of any slice of one), one row per item.

        Args:
            model: the ``PretrainModule`` (its towers are its attributes; ``encode_image``).
            batch: the collated batch.
            stage: "train" or "val".
        """
        raise NotImplementedError(f"method {self.name!r} does not train")

    def loss(self, model: Any, embeddings: dict[str, torch.Tensor],
             batch: dict[str, Any]) -> torch.Tensor:
        """The scalar loss of the embeddings of a whole batch (all processes' under DDP)."""
        raise NotImplementedError(f"method {self.name!r} does not train")

    def lr_scales(self) -> dict[str, float]:
        """Learning-rate factors by tower name (default 1)."""
        return {}

    def unsaved_keys(self, model: nn.Module) -> list[str]:
        """State-dict keys left out of checkpoints and exports (e.g. frozen pretrained weights,
        found again from their source); put back from the freshly built model on load."""
        return []


def make_contrastive_loss(config: PretrainConfig) -> nn.Module:
    """The config's contrastive loss module (``loss.name``: clip or siglip)."""

    return ClipLoss() if config.loss.name == "clip" else SigLipLoss()


class ContrastiveObjective(Objective):
    """Two embeddings per item pulled together row by row with the config's contrastive loss.

    ``embed`` returns ``{"image": ..., partner: ...}`` (L2-normalised rows); the loss is
    ``loss_fn(image, partner)`` over the global batch: under DDP the embeddings of every
    process are gathered with gradients, so the negatives span all processes. Other exams of
    the same patient are masked (``loss.patient_mask``), and so are pairs with the same
    ``content_idx`` when the batch has one.
    """

    partner: ClassVar[str] = ""

    def build(self, embed_dim: int, **tower_args: Any) -> dict[str, nn.Module]:
        return {**self.build_towers(embed_dim, **tower_args),
                "loss_fn": make_contrastive_loss(self.config)}

    def build_towers(self, embed_dim: int, **tower_args: Any) -> dict[str, nn.Module]:
        """The towers besides the image tower (the loss module is added by :meth:`build`)."""
        return {}

    def loss(self, model: Any, embeddings: dict[str, torch.Tensor],
             batch: dict[str, Any]) -> torch.Tensor:

        a, b = embeddings["image"], embeddings[self.partner]
        groups = batch["patient_idx"].to(a.device).long()
        content = batch.get("content_idx")
        content = None if content is None else content.to(a.device).long()
        if is_distributed():
            from medimp.models.distributed import gather_no_grad, gather_with_grad

            a, b = gather_with_grad(a), gather_with_grad(b)
            groups = gather_no_grad(groups)
            content = None if content is None else gather_no_grad(content)
        exclude = None if content is None else content[:, None] == content[None, :]
        return model.loss_fn(a, b, groups=groups if self.config.loss.patient_mask else None,
                             exclude=exclude)
