"""The Lightning module: image tower + (text | second view | tabular) tower + contrastive loss.

The module speaks a batch-dict interface, so the same code serves every method:

* ``image``: float [B, C, D, H, W]; ``patient_idx``: long [B]; ``index``: long [B] (item index);
* ``medimp``: ``prompts``: list of B lists of paraphrases (one drawn per sample per step);
* ``image_ssl``: ``image2``: a second augmented view of the same exams;
* ``tabular_clip``: ``tabular``: float [B, T] (standardised clinical variables + indicators).

Under DDP the embeddings (and patient indices) of every process are gathered, with gradients,
before the loss, so the negatives span the global batch.
"""

from __future__ import annotations

import math
import random
from typing import Any

import numpy as np
import torch
from lightning.pytorch import LightningModule
from torch import nn
from torch.nn.functional import normalize

from medimp.train.config import PretrainConfig

__all__ = ["PretrainModule", "WarmupCosine", "draw_prompts", "is_distributed"]

# a fixed stream id for validation draws, so the validation loss is comparable between epochs
_VAL_STREAM = 2**31 - 1


def is_distributed() -> bool:
    """True inside an initialised process group of more than one process."""
    return (torch.distributed.is_available() and torch.distributed.is_initialized()
            and torch.distributed.get_world_size() > 1)


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
    trainable layers of the pretrained text encoder at ``lr * optim.text_lr_scale``."""
    buckets: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, p in module.named_parameters():
        if not p.requires_grad:
            continue
        no_decay = p.ndim < 2 or "logit_scale" in name or "bias" in name or "norm" in name.lower()
        buckets.setdefault((name.startswith("text_encoder."), not no_decay), []).append(p)
    return [{"params": params, "weight_decay": optim.weight_decay if decay else 0.0,
             "lr": optim.lr * (optim.text_lr_scale if text else 1.0)}
            for (text, decay), params in sorted(buckets.items())]


class PretrainModule(LightningModule):
    """Contrastive pretraining of a 3D image encoder (MEDIMP and its baselines).

    Args:
        config: the run's ``PretrainConfig`` as a JSON-able dict (stored in checkpoints).
        in_channels: number of phases stacked as channels.
        n_tabular: input size of the tabular tower (``tabular_clip`` only).
    """

    def __init__(self, config: dict[str, Any], in_channels: int, n_tabular: int = 0) -> None:
        super().__init__()
        self.save_hyperparameters()
        from medimp.models import ClipLoss, ProjectionHead, SigLipLoss, create_image_encoder

        self.cfg = PretrainConfig.model_validate(config)
        cfg = self.cfg
        self.image_encoder = create_image_encoder(cfg.image_encoder.name, in_channels,
                                                  **cfg.image_encoder.kwargs)
        self.image_proj = ProjectionHead(self.image_encoder.num_features, cfg.embed_dim)
        self.text_encoder: nn.Module | None = None
        self.text_proj: nn.Module | None = None
        self.tabular_encoder: nn.Module | None = None
        if cfg.method == "medimp":
            from medimp.models import create_text_encoder

            self.text_encoder = create_text_encoder(cfg.text.path, pooling=cfg.text.pooling,
                                                    freeze=cfg.text.freeze, cache=cfg.text.cache)
            self.text_proj = ProjectionHead(self.text_encoder.num_features, cfg.embed_dim)
        elif cfg.method == "tabular_clip":
            from medimp.models import create_tabular_encoder

            if n_tabular < 1:
                raise ValueError("tabular_clip needs at least one clinical variable")
            # the featurizer already standardised, filled and flagged missing values
            self.tabular_encoder = create_tabular_encoder(n_tabular, cfg.embed_dim,
                                                          missing_indicators=False)
        self.loss_fn = ClipLoss() if cfg.loss.name == "clip" else SigLipLoss()
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

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        """L2-normalised text embeddings in the shared space (``medimp`` runs)."""
        if self.text_encoder is None or self.text_proj is None:
            raise RuntimeError(f"a {self.cfg.method} run has no text tower")
        hidden = self.text_encoder(list(texts)).to(self.device)
        return normalize(self.text_proj(hidden).float(), dim=-1)

    def encode_tabular(self, x: torch.Tensor) -> torch.Tensor:
        """L2-normalised tabular embeddings (``tabular_clip`` runs)."""
        assert self.tabular_encoder is not None
        return normalize(self.tabular_encoder(x).float(), dim=-1)

    # ------------------------------------------------------------------------------------- loss
    def pair(self, batch: dict[str, Any], stage: str = "train"
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """The two sets of embeddings that the loss pulls together, row by row."""
        img = self.encode_image(batch["image"])
        method = self.cfg.method
        if method == "medimp":
            step = self.global_step if stage == "train" else _VAL_STREAM
            idx = [int(i) for i in batch["index"]]
            texts = draw_prompts(batch["prompts"], idx, self.cfg.seed, step)
            return img, self.encode_text(texts)
        if method == "image_ssl":
            return img, self.encode_image(batch["image2"])
        if method == "tabular_clip":
            return img, self.encode_tabular(batch["tabular"])
        raise RuntimeError(f"method {method!r} does not train")

    def compute_loss(self, batch: dict[str, Any], stage: str = "train") -> torch.Tensor:
        """Contrastive loss over the global batch (all processes), patient-masked."""
        a, b = self.pair(batch, stage)
        groups = batch["patient_idx"].to(a.device).long()
        content = batch.get("content_idx")
        content = None if content is None else content.to(a.device).long()
        if is_distributed():
            from medimp.models.distributed import gather_no_grad, gather_with_grad

            a, b = gather_with_grad(a), gather_with_grad(b)
            groups = gather_no_grad(groups)
            content = None if content is None else gather_no_grad(content)
        exclude = None if content is None else content[:, None] == content[None, :]
        return self.loss_fn(a, b, groups=groups if self.cfg.loss.patient_mask else None,
                            exclude=exclude)

    def on_train_epoch_start(self) -> None:
        dm = getattr(self.trainer, "datamodule", None)
        if dm is not None and hasattr(dm, "set_epoch"):
            dm.set_epoch(self.current_epoch)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        loss = self.compute_loss(batch, "train")
        if not torch.isfinite(loss):
            from medimp.train.config import TrainError

            raise TrainError(
                f"non-finite training loss at epoch {self.current_epoch + 1}, step "
                f"{self.global_step} (precision {self.trainer.precision!r}, channels_last "
                f"{self.cfg.channels_last}, lr {self.cfg.optim.lr}); checkpoints/last.ckpt holds "
                "the last good epoch: lower optim.lr, or use precision '32', and --resume")
        bs = int(batch["image"].shape[0])
        self.log("train_loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=bs,
                 sync_dist=is_distributed())
        scale = getattr(self.loss_fn, "logit_scale", None)
        if isinstance(scale, torch.Tensor):
            self.log("temperature_inv", scale.detach().exp(), on_step=False, on_epoch=True,
                     batch_size=bs, sync_dist=is_distributed())
        return loss

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor | None:
        if batch["image"].shape[0] < 2:
            return None  # one sample has no negative: its loss is meaningless
        loss = self.compute_loss(batch, "val")
        self.log("val_loss", loss, on_step=False, on_epoch=True, prog_bar=True,
                 batch_size=int(batch["image"].shape[0]), sync_dist=True)
        return loss

    # -------------------------------------------------------------------------------- optimizer
    def configure_optimizers(self) -> Any:
        o = self.cfg.optim
        groups = param_groups(self, o)
        opt_cls = torch.optim.AdamW if o.name == "adamw" else torch.optim.Adam
        opt = opt_cls(groups, lr=o.lr, betas=tuple(o.betas), eps=o.eps)
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
        checkpoint["medimp_architecture"] = self.cfg.architecture()
        # the frozen text weights are the pretrained model's: 90 MB per checkpoint for MiniLM,
        # written every epoch, for nothing; on_load_checkpoint puts them back
        state = checkpoint.get("state_dict", {})
        for key in self._frozen_text_keys():
            state.pop(key, None)

    def _frozen_text_keys(self) -> list[str]:
        if self.text_encoder is None:
            return []
        trainable = {n for n, p in self.text_encoder.named_parameters() if p.requires_grad}
        return [f"text_encoder.{k}" for k in self.text_encoder.state_dict() if k not in trainable]

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("state_dict")
        if state is not None:
            own = self.state_dict()
            for key in self._frozen_text_keys():
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

    # ---------------------------------------------------------------------------------- export
    def export_state(self) -> dict[str, torch.Tensor]:
        """Weights to export: image tower, and the trainable text / tabular tower + temperature.

        Frozen text-encoder weights are not copied: they are the pretrained model's, found
        again from the path recorded in ``model.json``.
        """
        out: dict[str, torch.Tensor] = {}
        for prefix, mod in (("image_encoder", self.image_encoder), ("image_proj", self.image_proj),
                            ("text_proj", self.text_proj),
                            ("tabular_encoder", self.tabular_encoder), ("loss_fn", self.loss_fn)):
            if mod is None:
                continue
            for k, v in mod.state_dict().items():
                out[f"{prefix}.{k}"] = v
        if self.text_encoder is not None:
            trainable = {n for n, p in self.text_encoder.named_parameters() if p.requires_grad}
            for k, v in self.text_encoder.state_dict().items():
                if k in trainable:
                    out[f"text_encoder.{k}"] = v
        return {k: v.detach().float().contiguous().cpu() if v.is_floating_point()
                else v.detach().contiguous().cpu() for k, v in out.items()}
