"""Lightning callbacks of the pretraining loop: history table, time-boxed stop, text warm-up."""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from lightning.pytorch import Callback, LightningModule, Trainer

from medimp._io import atomic_write_text

__all__ = ["HistoryCallback", "PrecomputeTextCallback", "StopAfterEpochs"]

HISTORY_COLUMNS = ["epoch", "step", "train_loss", "val_loss", "lr", "seconds"]


def _metric(metrics: dict[str, Any], *names: str) -> float:
    for n in names:
        v = metrics.get(n)
        if v is not None:
            return float(v.item() if isinstance(v, torch.Tensor) else v)
    return float("nan")


class HistoryCallback(Callback):
    """Writes ``history.csv`` (epoch, step, train_loss, val_loss, lr, seconds) after each epoch.

    The file is rewritten atomically; on resume, rows of epochs not yet re-run are kept.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._t0 = time.perf_counter()

    def _read(self) -> pd.DataFrame:
        if self.path.is_file():
            return pd.read_csv(self.path)
        return pd.DataFrame(columns=HISTORY_COLUMNS)

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._t0 = time.perf_counter()

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        m = trainer.callback_metrics
        lr = trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else float("nan")
        row = {"epoch": trainer.current_epoch + 1, "step": trainer.global_step,
               "train_loss": _metric(m, "train_loss_epoch", "train_loss"),
               "val_loss": _metric(m, "val_loss"), "lr": lr,
               "seconds": round(time.perf_counter() - self._t0, 3)}
        df = self._read()
        df = df[df["epoch"] < row["epoch"]] if len(df) else df
        df = pd.concat([df, pd.DataFrame([row])], ignore_index=True) if len(df) else \
            pd.DataFrame([row], columns=HISTORY_COLUMNS)
        buf = io.StringIO()
        df.to_csv(buf, index=False)
        atomic_write_text(self.path, buf.getvalue())


class StopAfterEpochs(Callback):
    """Stop this invocation once ``n`` epochs are done in total (for time-limited jobs)."""

    def __init__(self, n: int) -> None:
        self.n = int(n)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.current_epoch + 1 >= self.n:
            trainer.should_stop = True


class PrecomputeTextCallback(Callback):
    """Embed every prompt once before training when the text encoder is fully frozen.

    The text encoder's per-prompt cache then answers every later call, so after this no
    epoch spends time in the text tower.
    """

    def __init__(self, prompts: list[str], batch_size: int = 64) -> None:
        self.prompts = prompts
        self.batch_size = batch_size
        self.seconds = 0.0

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        enc = getattr(pl_module, "text_encoder", None)
        if enc is None or not self.prompts:
            return
        t0 = time.perf_counter()
        with torch.no_grad():
            for i in range(0, len(self.prompts), self.batch_size):
                enc(self.prompts[i:i + self.batch_size])
        self.seconds = time.perf_counter() - t0
