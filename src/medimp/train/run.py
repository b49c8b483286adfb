"""``pretrain()``: one call from a cohort folder to a run folder with an exported model.

A run folder holds ``config.yaml``, ``checkpoints/last.ckpt`` (+ ``best.ckpt`` by validation
loss), ``logs/csv`` and ``logs/tb`` (TensorBoard), ``history.csv``, and the exported
``model.safetensors`` + ``model.json``. Every check that can fail (config, text model, cohort,
split sizes, precision, checkpoint architecture) runs before the first step.
"""

from __future__ import annotations

import datetime as _dt
import importlib.util
import logging
import os
import signal
import sys
import threading
import warnings
from pathlib import Path
from typing import Any

import torch

from medimp.data.cohort._values import CohortWarning
from medimp.data.cohort.fingerprint import cohort_fingerprint
from medimp.train._runfolder import RunFolder, is_global_zero, run_folder
from medimp.train.callbacks import (
    HISTORY_COLUMNS,
    HistoryCallback,
    StopAfterEpochs,
)
from medimp.train.checkpoint import (
    AtomicCheckpointIO,
    check_checkpoint,
    check_resume_config,
    check_world,
    export_model,
    read_checkpoint,
)
from medimp.train.config import (
    ConfigError,
    PretrainConfig,
    TrainError,
    TrainingInterrupted,
    config_from_dict,
    load_config,
    save_config,
)
from medimp.train.datamodule import PretrainDataModule
from medimp.train.module import PretrainModule
from medimp.train.objectives import create_objective
from medimp.train.precision import explain_precision

__all__ = ["pretrain", "resolve_config"]

_QUIET_LOGGERS = ("lightning.pytorch.utilities.rank_zero", "lightning.pytorch.accelerators.cuda",
                  "lightning.fabric.utilities.seed", "lightning.pytorch.utilities.warnings")


def resolve_config(config: PretrainConfig | dict[str, Any] | str | os.PathLike[str] | None,
                   run_dir: Path | None = None, resume: bool = False) -> PretrainConfig:
    """A ``PretrainConfig`` from an object, a mapping, a YAML path, or the run's saved config."""
    if config is None:
        saved = run_dir / "config.yaml" if run_dir is not None else None
        if resume and saved is not None and saved.is_file():
            return load_config(saved)
        return PretrainConfig()
    if isinstance(config, PretrainConfig):
        return config
    if isinstance(config, dict):
        return config_from_dict(config, "config")
    return load_config(config)


def _check_precision(config: PretrainConfig) -> tuple[str, str]:
    """The precision the run uses (``auto`` resolved for this machine) and why, after the
    checks."""

    if config.precision == "16-mixed" and not torch.cuda.is_available():
        raise ConfigError("precision '16-mixed' needs a CUDA GPU; use 'bf16-mixed' or '32' on CPU")
    if config.accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ConfigError(f"accelerator {config.accelerator!r} asked for, but no CUDA GPU found")
    return explain_precision(config.precision, config.accelerator)


def _run_log(run_dir: Path, message: str, echo: bool) -> None:
    """Append a line to the run's ``logs/run.log`` (rank 0), and show it when ``echo``."""
    if not is_global_zero():
        return
    line = f"{_now()} {message}"
    path = run_dir / "logs" / "run.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as fh:
        fh.write(line + "\n")
    if echo:
        print(message, file=sys.stderr, flush=True)


def _loggers(run_dir: Path, config: PretrainConfig) -> list[Any]:
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    loggers: list[Any] = [CSVLogger(run_dir / "logs", name="csv", version=""),
                          TensorBoardLogger(run_dir / "logs", name="tb", version="",
                                            default_hp_metric=False)]
    if config.mlflow:
        # an optional dependency: absent -> a warning; present but broken -> its own error
        if importlib.util.find_spec("mlflow") is None:
            warnings.warn("mlflow is not installed: MLflow logging skipped", stacklevel=2)
        else:
            from lightning.pytorch.loggers import MLFlowLogger

            loggers.append(MLFlowLogger(experiment_name="medimp",
                                        tracking_uri=f"file:{run_dir / 'mlruns'}"))
    return loggers


def pretrain(cohort_path: str | os.PathLike[str], out_dir: str | os.PathLike[str],
             config: PretrainConfig | dict[str, Any] | str | os.PathLike[str] | None = None,
             *, resume: bool = False, progress: bool = True, overwrite: bool = False) -> Path:
    """Pretrain an image encoder on a cohort and export it.

    Args:
        cohort_path: cohort folder (``medimp.data.read_cohort``).
        out_dir: run folder; created; must be new, empty, or hold a run (``resume`` continues
            it; ``overwrite`` replaces it, only once the new run has finished). Locked while
            the run trains: a second ``pretrain`` on it fails at once.
        config: ``PretrainConfig``, a mapping, a YAML path, or None (defaults; on resume, the
            run's saved ``config.yaml``).
        resume: continue from ``out_dir/checkpoints/last.ckpt`` exactly where it stopped
            (weights, optimizer, scheduler, epoch, RNG states).
        progress: show a rich progress bar.
        overwrite: start afresh in a folder that holds an earlier run; the new run is built
            in a sibling folder and replaces the old one only on success.

    Returns:
        The run folder.

    Raises:
        ConfigError, TrainError (both ``ValueError``): bad input, before any training step;
            ``resume`` and ``overwrite`` together (one continues the run, the other replaces
            it: the resumed run would be neither).
    """
    if resume and overwrite:
        raise TrainError(f"{out_dir}: --resume continues the run there and --overwrite replaces "
                         "it with a new one; give only one of them")
    with run_folder(out_dir, resume=resume, overwrite=overwrite) as folder:
        _pretrain(cohort_path, folder, config, resume=resume, progress=progress)
    return folder.path


def _pretrain(cohort_path: str | os.PathLike[str], folder: RunFolder,
              config: PretrainConfig | dict[str, Any] | str | os.PathLike[str] | None,
              *, resume: bool, progress: bool) -> None:
    from lightning.pytorch import seed_everything


    run_dir = folder.work  # == folder.path unless a finished run is being replaced
    cfg = resolve_config(config, run_dir, resume)
    ckpt_dir = run_dir / "checkpoints"
    last = ckpt_dir / "last.ckpt"
    ckpt = None
    if resume:
        if not last.is_file():
            raise TrainError(f"{run_dir}: nothing to resume ({last} not found); start without "
                             "--resume")
        ckpt = read_checkpoint(last)
        check_checkpoint(ckpt, cfg, last)
        check_resume_config(ckpt, cfg, last)
    precision, why = _check_precision(cfg)
    objective = create_objective(cfg.method, cfg)
    objective.check()
    _quiet()

    seed_everything(cfg.seed, workers=True, verbose=False)
    cache_dir = Path(cfg.cache_dir) if cfg.cache_dir else None  # None: the data stage's default
    dm = PretrainDataModule(cohort_path, cfg, cache_dir=cache_dir, objective=objective)
    try:
        module = PretrainModule(cfg.model_dump(mode="json"), in_channels=dm.in_channels,
                                tower_args=objective.tower_args())
    except (OSError, KeyError) as exc:
        raise ConfigError(f"cannot build the model of this config: {exc}") from None
    if objective.trains and _local_zero():
        # one process per node reads and preprocesses every exam; the others wait for it at
        # the process group's start (in trainer.fit), then read the filled cache
        _preflight(dm, cache_dir, progress)
    folder.create()  # every check passed: only now is anything written
    _run_log(run_dir, f"precision {precision}: {why}", echo=progress)

    extra: dict[str, Any] = {
        "method": cfg.method, "config": cfg.model_dump(mode="json"),
        "image_encoder": cfg.image_encoder.model_dump(mode="json"),
        "in_channels": dm.in_channels, "num_features": int(module.image_encoder.num_features),
        "embed_dim": cfg.embed_dim, "preprocess": dm.preprocess.model_dump(mode="json"),
        "phases": list(dm.cohort.study.phase_names),
        "train_patients": dm.train_patients, "val_patients": dm.val_patients,
        # which cohort trained it: evaluate warns when it scores a run on another cohort
        "cohort_fingerprint": cohort_fingerprint(cohort_path),
        "precision": precision, "precision_reason": why,
        **objective.metadata(),
    }

    if not objective.trains:
        from medimp._io import atomic_write_text

        if is_global_zero():
            save_config(cfg, run_dir / "config.yaml")

        export_model(module, run_dir, {**extra, "epochs_trained": 0, "global_step": 0,
                                       "created": _now()})
        atomic_write_text(run_dir / "history.csv", ",".join(HISTORY_COLUMNS) + "\n")
        return

    callbacks = _callbacks(cfg, objective, run_dir, has_val=bool(dm.val_keys),
                           progress=progress)
    trainer = _trainer(cfg, run_dir, callbacks, progress, precision)
    if ckpt is not None:
        check_world(ckpt, int(trainer.world_size), last)
    if is_global_zero():  # after the world check: a refused resume leaves config.yaml as it was
        save_config(cfg, run_dir / "config.yaml")
    if cfg.compile:
        module.image_encoder.compile()  # in place: the weights keep their names
    _run_log(run_dir, f"{trainer.world_size} process(es) x batch {cfg.batch_size} x "
             f"{cfg.accumulate_grad_batches} accumulated = global batch "
             f"{trainer.world_size * cfg.batch_size * cfg.accumulate_grad_batches}; "
             f"{torch.get_num_threads()} torch thread(s), {cfg.num_workers} loader worker(s)"
             f"{', compiled encoder' if cfg.compile else ''}", echo=False)
    _fit(trainer, module, dm, last, resume)
    if trainer.is_global_zero:
        _export_trained(module, run_dir, extra, callbacks, last)
    if trainer.world_size > 1 and torch.distributed.is_initialized():
        torch.distributed.barrier()


def _quiet() -> None:
    """Silence Lightning's messages that do not concern a medimp user."""
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*Checkpoint directory.*exists and is not empty.*")
    warnings.filterwarnings("ignore", message=".*Experiment logs directory.*exists.*")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    # the frozen text layers are kept in eval mode on purpose (deterministic, cacheable outputs)
    warnings.filterwarnings("ignore", message=".*module\\(s\\) in eval mode.*")
    warnings.filterwarnings("ignore", message=".*smaller than the logging interval.*")


def _callbacks(cfg: PretrainConfig, objective: Any, run_dir: Path, *, has_val: bool,
               progress: bool) -> list[Any]:
    """History, the resume (last) and best checkpoints, early stop, the objective's own."""
    from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint, RichProgressBar

    ckpt_dir = run_dir / "checkpoints"
    # the learning rate of every step reaches the loggers (TensorBoard, CSV, MLflow) as "lr"
    callbacks: list[Any] = [HistoryCallback(run_dir / "history.csv"),
                            LearningRateMonitor(logging_interval="step")]
    # "best" before "last": both act at the end of an epoch in list order, and last.ckpt stores
    # the best callback's state as it is then; saved first, last.ckpt held the best score of
    # the epoch before, and a resumed run forgot the last epoch's best (a worse later epoch
    # then replaced best.ckpt and model.json's best_val_loss)
    if has_val:
        callbacks.append(ModelCheckpoint(dirpath=ckpt_dir, filename="best", monitor="val_loss",
                                         mode="min", save_top_k=1, enable_version_counter=False))
    # every epoch, overwritten (atomically): what --resume reads
    callbacks.append(ModelCheckpoint(dirpath=ckpt_dir, filename="last", monitor=None,
                                     save_top_k=1, every_n_epochs=1,
                                     enable_version_counter=False))
    if cfg.stop_after_epochs is not None:
        callbacks.append(StopAfterEpochs(cfg.stop_after_epochs))
    callbacks.extend(objective.callbacks())
    if progress:
        callbacks.append(RichProgressBar(leave=True))
    return callbacks


def _trainer(cfg: PretrainConfig, run_dir: Path, callbacks: list[Any], progress: bool,
             precision: str) -> Any:
    from lightning.pytorch import Trainer

    on_cpu = cfg.accelerator == "cpu" or not torch.cuda.is_available()
    return Trainer(
        default_root_dir=run_dir, max_epochs=cfg.epochs, precision=precision,
        accelerator=cfg.accelerator, devices=cfg.devices, strategy=_strategy(cfg),
        num_nodes=cfg.num_nodes, accumulate_grad_batches=cfg.accumulate_grad_batches,
        gradient_clip_val=cfg.optim.grad_clip, deterministic=True if on_cpu else None,
        logger=_loggers(run_dir, cfg), callbacks=callbacks, plugins=[AtomicCheckpointIO()],
        enable_progress_bar=progress, enable_model_summary=progress, num_sanity_val_steps=0,
        log_every_n_steps=cfg.log_every_n_steps, benchmark=cfg.cudnn_benchmark and not on_cpu,
        sync_batchnorm=cfg.sync_batchnorm,
    )


def _strategy(cfg: PretrainConfig) -> Any:
    """The Lightning strategy; the DDP ones with the configured timeout."""
    starts = {"ddp": "popen", "ddp_spawn": "spawn", "ddp_fork": "fork"}
    if cfg.strategy not in starts:
        return cfg.strategy
    import datetime

    from lightning.pytorch.strategies import DDPStrategy

    return DDPStrategy(start_method=starts[cfg.strategy],
                       timeout=datetime.timedelta(minutes=cfg.dist_timeout_minutes))


def _local_zero() -> bool:
    """True in the first process of this node (every process when not distributed)."""
    return int(os.environ.get("LOCAL_RANK", "0") or 0) == 0 and \
        int(os.environ.get("SLURM_LOCALID", "0") or 0) == 0


def _export_trained(module: Any, run_dir: Path, extra: dict[str, Any], callbacks: list[Any],
                    last: Path) -> None:
    """Export the towers with the epochs trained and the best validation loss."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    best = None
    for cb in callbacks:
        if isinstance(cb, ModelCheckpoint) and cb.monitor == "val_loss" and \
                cb.best_model_score is not None:
            best = float(cb.best_model_score)
    # progress from the last checkpoint: right under every strategy (ddp_spawn trains in
    # child processes, whose trainer state does not come back to this one)
    done = read_checkpoint(last) if last.is_file() else {}
    export_model(module, run_dir, {**extra, "epochs_trained": int(done.get("epoch", -1)) + 1,
                                   "global_step": int(done.get("global_step", 0)),
                                   "best_val_loss": best, "created": _now()})


def _preflight(dm: Any, cache_dir: Path | None, progress: bool) -> None:
    """Every image the run will read is read and preprocessed (into the cache) now: a damaged
    one fails here, named, not inside epoch 1; geometry problems are warned about."""
    from medimp.data.pipeline._preflight import preflight_exams

    report = preflight_exams(dm.cohort, dm.preprocess, [*dm.train_keys, *dm.val_keys],
                             cache_dir, progress=progress and is_global_zero())
    if is_global_zero():
        for p in report.warnings:
            warnings.warn(str(p), CohortWarning, stacklevel=3)
    if report.errors:
        raise TrainError(report.message(dm.cohort.root))


def _fit(trainer: Any, module: Any, dm: Any, last: Path, resume: bool) -> None:
    """``trainer.fit``, with Ctrl-C reported as :class:`TrainingInterrupted` (Lightning shuts
    down gracefully, then calls ``sys.exit(1)`` and leaves SIGINT ignored)."""
    handler = signal.getsignal(signal.SIGINT)
    try:
        trainer.fit(module, datamodule=dm, ckpt_path=str(last) if resume else None)
    except SystemExit:
        if not trainer.interrupted:
            raise
        done = int(read_checkpoint(last).get("epoch", -1)) + 1 if last.is_file() else 0
        if done:
            msg = f"interrupted after epoch {done}; resume with --resume"
        else:
            msg = "interrupted before the first epoch ended; nothing to resume, start again"
        raise TrainingInterrupted(msg) from None
    finally:
        if handler is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, handler)


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
