"""The Lightning module: the shared image tower + the objective's towers and loss.

The module speaks a batch-dict interface, the same for every objective:

* ``image``: float [B, C, D, H, W]; ``patient_idx``: long [B]; ``index``: long [B] (item index);
* plus the objective's own fields (``medimp.train.objectives``), e.g. ``prompts`` (medimp),
  ``image2`` (image_ssl), ``tabular`` (tabular_clip).

A step is ``objective.loss(self, objective.embed(self, batch, stage), batch)``: the objective
owns the towers besides the image tower (registered here under the names it gives), the
forward pass and the loss; under DDP its loss gathers the embeddings of every process.
"""

from __future__ import annotations

import math
import random
import warnings
from typing import Any

import numpy as np
import torch
from lightning.pytorch import LightningModule
from torch import nn
from torch.nn.functional import normalize

from medimp.models import ProjectionHead, create_image_encoder
from medimp.models.distributed import is_distributed
from medimp.train.config import PretrainConfig, TrainError
from medimp.train.gradcache import gradcache_backward
from medimp.train.objectives import create_objective
from medimp.train.precision import resolve_precision

# consecutive bf16/fp16 steps with a non-finite loss or gradient skipped before giving up
_MAX_SKIPPED = 5

__all__ = ["PretrainModule", "WarmupCosine", "is_distributed", "param_groups"]


class WarmupCosine:
    """Learning-rate factor: linear warm-up over ``warmup`` steps, then cosine decay to 0.

    A plain callable object (not a lambda), so ``LambdaLR.state_dict`` stores it.
    """

    def __init__(self, warmup: int, total: int) -> None:
        self.warmup = int(warmup)
        self.total = max(int(total), 1)

    def __call__(self, step: int) -> float:
        if self.warmup > 0 and step < self.warmup:
            return (step + 1) / self.warmup
        span = max(self.total - self.warmup, 1)
        progress = min(max(step - self.warmup, 0) / span, 1.0)
        return 0.5 * (1.0 + math.cos(math.pi * progress))


def param_groups(module: nn.Module, optim: Any) -> list[dict[str, Any]]:
    """Optimizer parameter groups: no weight decay on biases, norms and the temperature; the
    towers the objective names in ``lr_scales()`` (e.g. medimp's pretrained text encoder) at
    ``lr`` times their factor."""
    objective = getattr(module, "objective", None)
    scales = objective.lr_scales() if objective is not None else {}
    buckets: dict[tuple[str, bool], list[nn.Parameter]] = {}
    for name, p in module.named_parameters():
        if not p.requires_grad:
            continue
        no_decay = p.ndim < 2 or "logit_scale" in name or "bias" in name or "norm" in name.lower()
        tower = name.split(".", 1)[0]
        tower = tower if tower in scales else ""
        buckets.setdefault((tower, not no_decay), []).append(p)
    return [{"params": params, "weight_decay": optim.weight_decay if decay else 0.0,
             "lr": optim.lr * scales.get(tower, 1.0)}
            for (tower, decay), params in sorted(buckets.items())]


class PretrainModule(LightningModule):
    """Contrastive pretraining of a 3D image encoder (MEDIMP and its baselines).

    Args:
        config: the run's ``PretrainConfig`` as a JSON-able dict (stored in checkpoints).
        in_channels: number of phases stacked as channels.
        tower_args: sizes the objective's towers take from the data
            (``Objective.tower_args()``, e.g. tabular_clip's number of clinical features).
    """

    def __init__(self, config: dict[str, Any], in_channels: int,
                 tower_args: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.save_hyperparameters()

        self.cfg = PretrainConfig.model_validate(config)
        cfg = self.cfg
        self.objective = create_objective(cfg.method, cfg)
        self.image_encoder = create_image_encoder(cfg.image_encoder.name, in_channels,
                                                  pretrained=cfg.image_encoder.pretrained,
                                                  **cfg.image_encoder.kwargs)
        self.image_proj = ProjectionHead(self.image_encoder.num_features, cfg.embed_dim)
        # the towers may take the image encoder's feature size (e.g. a second image head)
        sizes = {"image_features": int(self.image_encoder.num_features), **(tower_args or {})}
        for name, tower in self.objective.build(cfg.embed_dim, **sizes).items():
            self.add_module(name, tower)
        if cfg.channels_last:
            self.image_encoder.to(memory_format=torch.channels_last_3d)

    # ----------------------------------------------------------------------------------- towers
    def encode_image(self, image: torch.Tensor, features: bool = False) -> torch.Tensor:
        """Image embeddings: L2-normalised projections, or the encoder's features."""
        if self.cfg.channels_last:
            image = image.contiguous(memory_format=torch.channels_last_3d)
        feats = self.image_encoder(image)
        if features:
            return feats
        return normalize(self.image_proj(feats).float(), dim=-1)

    # ------------------------------------------------------------------------------------- loss
    def embed(self, batch: dict[str, Any], stage: str = "train") -> dict[str, torch.Tensor]:
        """The objective's embeddings of a batch (or of a slice of one)."""
        return self.objective.embed(self, batch, stage)

    def compute_loss(self, batch: dict[str, Any], stage: str = "train") -> torch.Tensor:
        """The objective's loss of a batch (over all processes' embeddings under DDP)."""
        return self.objective.loss(self, self.embed(batch, stage), batch)

    def on_train_epoch_start(self) -> None:
        dm = getattr(self.trainer, "datamodule", None)
        if dm is not None and hasattr(dm, "set_epoch"):
            dm.set_epoch(self.current_epoch)

    # ------------------------------------------------------------------ non-finite values
    def _precision(self) -> str:
        trainer = getattr(self, "_trainer", None)
        if trainer is not None:
            return str(trainer.precision)

        return resolve_precision(self.cfg.precision, self.cfg.accelerator)

    def _fp32(self) -> bool:
        return self._precision() in ("32", "32-true", "64", "64-true")

    def _zero_loss(self) -> torch.Tensor:
        """A zero loss connected to every trainable weight: backward gives exact zero
        gradients, and under DDP every process still joins the gradient all-reduce (a ``None``
        from one process would leave the others waiting)."""
        params = [p for p in self.parameters() if p.requires_grad]
        return torch.stack([(p.reshape(-1)[:1] * 0).sum() for p in params]).sum()

    def _step_is_bad(self, local_bad: bool) -> bool:
        """True when any process found a non-finite loss or gradient in this step; every
        process takes the same decision (the gradients are all-reduced already, a loss is
        not)."""
        if not is_distributed():
            return local_bad
        flag = torch.tensor([1.0 if local_bad else 0.0], device=self.device)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        return bool(flag.item() > 0)

    def on_before_optimizer_step(self, optimizer: Any) -> None:
        """A non-finite loss or gradient never reaches the weights. Under bf16/fp16 the step is
        skipped (gradients dropped: the weights and optimizer state stay as they were), at most
        ``_MAX_SKIPPED`` optimizer steps in a row, counted across finite losses too (a run whose
        gradients are all non-finite stops); in fp32, and beyond that count, it is an error
        (the last good epoch stays in last.ckpt). Every process decides alike under DDP."""
        bad_loss = bool(getattr(self, "_bad_loss", False))
        self._bad_loss = False
        grads = [p.grad for p in self.parameters() if p.grad is not None]
        bad_grad = bool(grads) and not bool(
            torch.isfinite(torch.stack(torch._foreach_norm(grads))).all())  # inf/NaN propagate
        if not self._step_is_bad(bad_loss or bad_grad):
            self._skipped_in_a_row = 0
            return
        what = "loss" if bad_loss or not bad_grad else "gradient"
        self._skipped_in_a_row = getattr(self, "_skipped_in_a_row", 0) + 1
        if not self._fp32() and self._skipped_in_a_row <= _MAX_SKIPPED:
            self.skipped_steps = getattr(self, "skipped_steps", 0) + 1
            for p in self.parameters():
                p.grad = None
            warnings.warn(f"non-finite {what} at epoch {self.current_epoch + 1}, step "
                          f"{self.global_step} under precision {self._precision()!r}: the step "
                          f"is skipped, weights unchanged ({self.skipped_steps} skipped so far)",
                          stacklevel=2)
            return

        bad = [n for n, p in self.named_parameters()
               if p.grad is not None and not bool(torch.isfinite(p.grad).all())]
        where = (f" in {', '.join(bad[:3])}{' ...' if len(bad) > 3 else ''}"
                 if what == "gradient" and bad else "")
        in_a_row = "" if self._fp32() else f", {self._skipped_in_a_row} steps in a row"
        # a resume keeps the learning rate (medimp.train.checkpoint.check_resume_config)
        todo = ("lower optim.lr in a new run" if self._fp32() else
                "--resume --set precision=32, or lower optim.lr in a new run")
        raise TrainError(
            f"non-finite training {what} at epoch {self.current_epoch + 1}, step "
            f"{self.global_step} (precision {self._precision()!r}{in_a_row}, channels_last "
            f"{self.cfg.channels_last}, lr {self.cfg.optim.lr}){where}; checkpoints/last.ckpt "
            f"holds the last good epoch: {todo}")

    def cached_loss(self, batch: dict[str, Any], micro_batch_size: int, *,
                    defer_last: bool = False, grad_scale: float = 1.0) -> Any:
        """Gradient caching (``micro_batch_size``): accumulate the gradient of the whole batch's
        loss micro-batch by micro-batch (``medimp.train.gradcache``); returns its result."""

        return gradcache_backward(lambda b: self.embed(b, "train"),
                                  lambda e, b: self.objective.loss(self, e, b), batch,
                                  micro_batch_size, modules=[self], defer_last=defer_last,
                                  grad_scale=grad_scale)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        micro = self.cfg.micro_batch_size
        out = None
        if micro is not None and micro < int(batch["image"].shape[0]):
            # exact large batch: the gradients of all but the last micro-batch are accumulated
            # here; the trainer's backward of the returned surrogate adds the last one (and
            # synchronises the processes under DDP). Lightning divides that backward by the
            # accumulation steps and multiplies it by the loss scale (16-mixed): so do we.
            trainer = getattr(self, "_trainer", None)
            scale = 1.0
            if trainer is not None:
                scaler = getattr(trainer.precision_plugin, "scaler", None)
                scale = (float(scaler.get_scale()) if scaler is not None else 1.0) / max(
                    int(trainer.accumulate_grad_batches), 1)
            res = self.cached_loss(batch, micro, defer_last=True, grad_scale=scale)
            loss, out = res.loss, res.surrogate
        else:
            loss = self.compute_loss(batch, "train")
        finite = bool(torch.isfinite(loss))
        if not finite and self._fp32() and not is_distributed():
            from medimp.train.config import TrainError

            raise TrainError(
                f"non-finite training loss at epoch {self.current_epoch + 1}, step "
                f"{self.global_step} (precision {self._precision()!r}, channels_last "
                f"{self.cfg.channels_last}, lr {self.cfg.optim.lr}); checkpoints/last.ckpt "
                "holds the last good epoch: lower optim.lr in a new run")
        if self._step_is_bad(not finite):
            # skipped (or refused, under fp32 in several processes) in on_before_optimizer_step,
            # by every process alike. Every process returns a zero loss and logs nothing, the
            # one with a finite loss too: the backward of its loss would run the gathered
            # negatives' collective, and a logged value with sync_dist is an all-reduce, both
            # of which the others would pair with their gradients' all-reduce (a hang)
            self._bad_loss = True
            return self._zero_loss()
        bs = int(batch["image"].shape[0])
        self.log("train_loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=bs,
                 sync_dist=is_distributed())
        scale = getattr(getattr(self, "loss_fn", None), "logit_scale", None)
        if isinstance(scale, torch.Tensor):
            self.log("temperature_inv", scale.detach().exp(), on_step=False, on_epoch=True,
                     batch_size=bs, sync_dist=is_distributed())
        return loss if out is None else out

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor | None:
        if batch["image"].shape[0] < 2:
            # one sample has no negative: its loss is meaningless. Under DDP every process
            # takes this branch alike (the gathers and the sync_dist log below are
            # collectives): Lightning's DistributedSampler pads every process to the same
            # number of items, so their batches have the same sizes
            return None
        loss = self.compute_loss(batch, "val")
        self.log("val_loss", loss, on_step=False, on_epoch=True, prog_bar=True,
                 batch_size=int(batch["image"].shape[0]), sync_dist=True)
        return loss

    # -------------------------------------------------------------------------------- optimizer
    def configure_optimizers(self) -> Any:
        o = self.cfg.optim
        groups = param_groups(self, o)
        opt_cls = torch.optim.AdamW if o.name == "adamw" else torch.optim.Adam
        opt = opt_cls(groups, lr=o.lr, betas=tuple(o.betas), eps=o.eps, fused=o.fused)
        total = int(self.trainer.estimated_stepping_batches)
        per_epoch = max(total // max(self.cfg.epochs, 1), 1)
        warmup = round(o.warmup_epochs * per_epoch)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, WarmupCosine(warmup, total))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    # ------------------------------------------------------------------------------ checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Store the RNG states (as tensors and ints, loadable with ``weights_only=True``)."""
        np_state = np.random.get_state()  # noqa: NPY002 - the global stream others may use
        py_state = random.getstate()
        checkpoint["medimp_rng"] = {
            "torch": torch.get_rng_state(),
            "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)),
                      "pos": int(np_state[2]), "has_gauss": int(np_state[3]),
                      "cached": float(np_state[4])},
            "python": [py_state[0], list(py_state[1]), py_state[2]],
        }
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            checkpoint["medimp_rng"]["cuda"] = list(torch.cuda.get_rng_state_all())
        # what a resume must match: the learning-rate schedule and the contrastive batch
        # depend on the number of processes (medimp.train.checkpoint.check_world)
        trainer = getattr(self, "_trainer", None)
        world = int(trainer.world_size) if trainer is not None else 1
        accumulate = int(trainer.accumulate_grad_batches) if trainer is not None else 1
        checkpoint["medimp_world"] = {
            "world_size": world, "batch_size": int(self.cfg.batch_size),
            "accumulate_grad_batches": accumulate,
            "global_batch": world * int(self.cfg.batch_size) * accumulate}
        checkpoint["medimp_architecture"] = self.cfg.architecture()
        # weights the objective does not store (e.g. a frozen pretrained text encoder, 90 MB
        # per checkpoint for MiniLM, written every epoch); on_load_checkpoint puts them back
        state = checkpoint.get("state_dict", {})
        for key in self.objective.unsaved_keys(self):
            state.pop(key, None)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("state_dict")
        if state is not None:
            own = self.state_dict()
            for key in self.objective.unsaved_keys(self):
                state.setdefault(key, own[key])
        rng = checkpoint.get("medimp_rng")
        if not rng:
            return
        torch.set_rng_state(rng["torch"])
        n = rng["numpy"]
        state = ("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                 n["cached"])
        np.random.set_state(state)  # noqa: NPY002 - restores the global stream
        py = rng["python"]
        random.setstate((py[0], tuple(py[1]), py[2]))
        cuda = rng.get("cuda")
        if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)

    # ---------------------------------------------------------------------------------- export
    def export_state(self) -> dict[str, torch.Tensor]:
        """Weights to export: image tower, the objective's towers and loss (temperature).

        What the objective does not store (``unsaved_keys``, e.g. frozen text-encoder weights)
        is not copied: it is found again from its source (the path recorded in ``model.json``).
        """
        skip = set(self.objective.unsaved_keys(self))
        return {k: v.detach().float().contiguous().cpu() if v.is_floating_point()
                else v.detach().contiguous().cpu()
                for k, v in self.state_dict().items() if k not in skip}
