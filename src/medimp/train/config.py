"""Pretraining configuration: one pydantic model, read from YAML and overridden from the CLI.

Every option has a default and a description, unknown keys are errors (``extra="forbid"``), so
a typo in a config file fails before any data is read. ``preprocess`` and ``augment`` are the
data stage's ``PreprocessConfig`` / ``AugmentConfig`` fields, kept here as plain mappings and
validated against the data stage's models when the config is built.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from medimp._io import atomic_write_text
from medimp.train.errors import ConfigError, TrainError, TrainingInterrupted

__all__ = [
    "RUNTIME_OPTIONS",
    "ConfigError",
    "ImageEncoderConfig",
    "LossConfig",
    "OptimConfig",
    "PretrainConfig",
    "PromptsConfig",
    "TabularConfig",
    "TextConfig",
    "TrainError",
    "TrainingInterrupted",
    "apply_overrides",
    "config_changes",
    "config_from_dict",
    "load_config",
    "save_config",
]

class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ImageEncoderConfig(_Strict):
    """Which 3D image encoder to build (``medimp.models.create_image_encoder``)."""

    name: str = Field("resnet10_3d", description="Registered encoder name, e.g. tiny_cnn_3d, "
                      "resnet10_3d ... resnet50_3d, clip_rn50_3d, vit_3d.")
    kwargs: dict[str, Any] = Field(default_factory=dict,
                                   description="Extra keyword arguments of the encoder builder "
                                   "(e.g. width, layers, input_size).")
    pretrained: str | None = Field(None, description="2D weights inflated into the encoder "
                                   "before training: OpenAI CLIP RN50.pt (TorchScript, read "
                                   "without running its code), an open_clip checkpoint, or a "
                                   "plain 2D ResNet state dict (docs/models.md).")


class TextConfig(_Strict):
    """Text tower of the ``medimp`` method (a Hugging Face encoder from a local folder)."""

    path: str | None = Field(None, description="Local folder of a Hugging Face encoder; default: "
                             "the offline all-MiniLM-L6-v2 package.")
    pooling: Literal["mean", "cls"] = Field("mean", description="Token pooling (attention-masked "
                                            "mean, or the [CLS] token).")
    freeze: str = Field("first:-1", description="Frozen layers: 'none', 'all', 'layernorm' "
                        "(train only LayerNorms) or 'first:N' (embeddings + first N layers; N<0 "
                        "counts from the end). MEDIMP froze 11 of 12 BERT layers; the default "
                        "'first:-1' trains only the last layer (5 of MiniLM's 6 frozen).")
    cache: bool = Field(True, description="Cache the frozen prefix's outputs per unique prompt, "
                        "so that a frozen text encoder costs nothing after the first epoch.")
    precompute: bool = Field(True, description="With a fully frozen text encoder, embed every "
                             "prompt once before training (fills the cache).")


class TabularConfig(_Strict):
    """Tabular tower of the ``tabular_clip`` baseline."""

    missing_indicator: bool = Field(True, description="Add a 0/1 'missing' column per variable "
                                    "(missing values themselves become 0 after scaling).")


class LossConfig(_Strict):
    """Contrastive objective."""

    name: Literal["clip", "siglip"] = Field("clip", description="'clip': symmetric InfoNCE with "
                                            "a learnable temperature; 'siglip': sigmoid loss.")
    patient_mask: bool = Field(True, description="Never use another exam of the same patient as "
                               "a negative (masked in the loss).")
    same_content_mask: bool = Field(
        False, description="medimp only: also mask pairs of exams whose prompts state the same "
        "clinical facts (same binned words). With coarse bins many exams share one description, "
        "and plain CLIP pushes their images apart as false negatives.")


class OptimConfig(_Strict):
    """Optimizer and learning-rate schedule (linear warm-up, then cosine decay to 0)."""

    name: Literal["adamw", "adam"] = Field("adamw", description="Optimizer.")
    lr: float = Field(1e-4, gt=0, description="Peak learning rate (MEDIMP: 1e-4).")
    weight_decay: float = Field(0.2, ge=0, description="Weight decay on weight matrices and "
                                "kernels (not on biases, norms, temperature); MEDIMP: 0.2.")
    betas: tuple[float, float] = Field((0.9, 0.98), description="Adam betas (CLIP's).")
    eps: float = Field(1e-6, gt=0, description="Adam epsilon (CLIP's).")
    warmup_epochs: float = Field(1.0, ge=0, description="Linear warm-up length in epochs "
                                 "(MEDIMP: 40 of 200).")
    grad_clip: float | None = Field(1.0, description="Clip the gradient norm to this (None: off).")
    fused: bool | None = Field(None, description="torch's fused Adam/AdamW kernel (one kernel "
                               "for every weight; CUDA, and CPU since torch 2.4); None: torch's "
                               "default (the multi-tensor one).")
    text_lr_scale: float = Field(1.0, gt=0, description="Learning rate of the trainable layers "
                                 "of the pretrained text encoder, relative to lr (e.g. 0.1 to "
                                 "fine-tune it gently while the image tower learns from "
                                 "scratch at a high lr).")


class PromptsConfig(_Strict):
    """How the medimp prompts are worded (``medimp.prompts.wording``)."""

    wording: Literal["original", "clinician", "clinician_fine"] = Field(
        "original", description="'original': the study's templates and the cohort's (or the "
        "rules) paraphrase bank, as in MEDIMP; 'clinician': grammatical sentences stating each "
        "bin's range and unit ('eGFR was 45-59 mL/min/1.73 m² at the one-month check-up'), "
        "same cut points; 'clinician_fine': the same with finer bins.")


class PretrainConfig(_Strict):
    """Everything ``medimp pretrain`` needs besides the cohort and the output folder."""

    method: str = Field("medimp", description="Pretraining objective, a name registered in "
                        "medimp.train.objectives: 'medimp': image vs text prompts (CLIP); "
                        "'image_ssl': two augmented views of an exam (SimCLR-style); "
                        "'tabular_clip': image vs an MLP of the prompts' clinical variables; "
                        "'random_init': the same encoder, untrained.")
    method_options: dict[str, Any] = Field(default_factory=dict, description="Options of the "
                                           "method's own (its objective's Options model; "
                                           "the built-in methods have none).")
    seed: int = Field(0, description="Seed of weights, data order, augmentation, paraphrases.")
    image_encoder: ImageEncoderConfig = Field(default_factory=ImageEncoderConfig,
                                              description="3D image encoder.")
    embed_dim: int = Field(128, gt=0, description="Size of the shared (projected) embedding.")
    text: TextConfig = Field(default_factory=TextConfig, description="Text tower (medimp).")
    tabular: TabularConfig = Field(default_factory=TabularConfig,
                                   description="Tabular tower (tabular_clip).")
    loss: LossConfig = Field(default_factory=LossConfig, description="Contrastive loss.")
    prompts: PromptsConfig = Field(default_factory=PromptsConfig,
                                   description="Wording of the medimp prompts.")
    phase_mask: Literal["zero", "channels"] = Field(
        "zero", description="How a missing contrast phase reaches the encoder: 'zero' (an "
        "all-zero channel, as before) or 'channels' (also one 0/1 channel per phase saying "
        "which were acquired; the encoder then has twice the phases as input channels). "
        "Training and `embed` build the input the same way.")
    phase_dropout: float = Field(
        0.0, ge=0, lt=1, description="Training only: drop each acquired phase with this "
        "probability (never all of an exam's), exactly as a missing phase is presented, so "
        "the encoder learns from exams with missing phases.")
    exams_per_patient: int | None = Field(
        None, ge=1, description="Pretrain on each patient's earliest K exams only (by days "
        "after transplant, then study order); None: every exam.")
    optim: OptimConfig = Field(default_factory=OptimConfig, description="Optimizer, schedule.")
    epochs: int = Field(10, ge=1, description="Training epochs (MEDIMP: 200).")
    stop_after_epochs: int | None = Field(None, ge=1, description="Stop this invocation after "
                                          "this many epochs in total (the schedule still spans "
                                          "`epochs`); continue later with --resume. For "
                                          "time-limited jobs.")
    batch_size: int = Field(8, ge=2, description="Exams per step per process (contrastive "
                            "losses need at least 2).")
    micro_batch_size: int | None = Field(
        None, ge=1, description="Exams per forward pass with a graph (the memory cap); the "
        "contrastive batch stays batch_size: gradient caching embeds every micro-batch without "
        "a graph, takes the loss over the whole batch, then back-propagates it micro-batch by "
        "micro-batch (exact, one extra forward per step). None: the whole batch in one pass.")
    accumulate_grad_batches: int = Field(1, ge=1, description="Steps of gradient accumulation "
                                         "(each step keeps its own negatives: not a larger "
                                         "contrastive batch; see micro_batch_size).")
    precision: Literal["auto", "32", "bf16-mixed", "16-mixed"] = Field(
        "auto", description="'auto': 'bf16-mixed' where bf16 is faster than fp32 (CUDA GPUs "
        "with bf16 tensor cores; CPUs with AMX-BF16, not AVX512-BF16 alone), else '32' (see "
        "medimp.train.precision; the run log says why); '32', 'bf16-mixed' (CPU or GPU), "
        "'16-mixed' (GPU only, loss scaling).")
    channels_last: bool = Field(False, description="Use the channels-last 3D memory format.")
    compile: bool = Field(False, description="torch.compile the image encoder (pays back on "
                          "long runs and GPUs; the first steps compile; docs/performance.md).")
    cudnn_benchmark: bool = Field(False, description="Let cuDNN time its convolution algorithms "
                                  "on the first steps (GPU; faster when the shapes are fixed, "
                                  "not bitwise reproducible).")
    sync_batchnorm: bool = Field(False, description="Under DDP, batch-norm statistics over "
                                 "every process's batch (torch's SyncBatchNorm) instead of each "
                                 "process's own.")
    dist_timeout_minutes: float = Field(30.0, gt=0, description="How long a process of a "
                                        "distributed run waits for the others (start-up, "
                                        "collectives) before failing.")
    num_workers: int = Field(0, ge=0, description="DataLoader worker processes (kept from one "
                             "epoch to the next; results are the same with any number).")
    in_memory: bool | None = Field(None, description="Keep the preprocessed exams in memory "
                                   "after their first read (above the disk cache); None: when "
                                   "the cohort's exams fit in a quarter of the available "
                                   "memory.")
    val_fraction: float = Field(0.2, ge=0, lt=1, description="Share of patients held out for "
                                "the validation loss (patient-grouped; 0: no validation).")
    cache_dir: str | None = Field(None, description="Folder for the preprocessed-volume cache "
                                  "(default: the data stage's <cohort>/.medimp_cache, shared by "
                                  "every run on the cohort; the cache is keyed by content).")
    preprocess: dict[str, Any] = Field(default_factory=dict, description="medimp.data."
                                       "PreprocessConfig fields (shape, spacing, ...).")
    augment: dict[str, Any] | None = Field(default_factory=dict, description="medimp.data."
                                           "AugmentConfig fields; null: no augmentation.")
    accelerator: str = Field("auto", description="Lightning accelerator: auto, cpu, gpu.")
    devices: int | str = Field("auto", description="Lightning devices (GPUs or processes).")
    strategy: str = Field("auto", description="Lightning strategy: auto, ddp, ddp_spawn, ...")
    num_nodes: int = Field(1, ge=1, description="Nodes (SLURM/torchrun set the rest).")
    mlflow: bool = Field(False, description="Also log to MLflow (if installed) under ./mlruns.")
    log_every_n_steps: int = Field(10, ge=1, description="Logging interval in steps.")

    @field_validator("method")
    @classmethod
    def _registered_method(cls, v: str) -> str:
        from medimp.train.objectives import get_objective

        get_objective(v)  # ConfigError (a ValueError) listing the registered names
        return v

    @field_validator("precision", mode="before")
    @classmethod
    def _precision_as_text(cls, v: Any) -> Any:
        return str(v) if isinstance(v, int) and not isinstance(v, bool) else v

    @model_validator(mode="after")
    def _check_method_options(self) -> PretrainConfig:
        from medimp.train.objectives import get_objective

        options = get_objective(self.method).Options
        try:
            options.model_validate(self.method_options)
        except ValidationError as exc:
            raise ValueError("method_options of " + repr(self.method) + ": " + "; ".join(
                f"{'.'.join(str(x) for x in e['loc']) or '(top level)'}: {e['msg']}"
                for e in exc.errors())) from None
        return self

    @model_validator(mode="after")
    def _check_data_configs(self) -> PretrainConfig:
        from medimp.data import AugmentConfig, PreprocessConfig

        PreprocessConfig.model_validate(self.preprocess)
        if self.augment is not None:
            AugmentConfig.model_validate(self.augment)
        return self

    def preprocess_config(self) -> Any:
        """The ``medimp.data.PreprocessConfig`` this config describes."""
        from medimp.data import PreprocessConfig

        return PreprocessConfig.model_validate(self.preprocess)

    def augment_config(self) -> Any:
        """The ``medimp.data.AugmentConfig`` (or None for no augmentation)."""
        if self.augment is None:
            return None
        from medimp.data import AugmentConfig

        return AugmentConfig.model_validate(self.augment)

    def architecture(self) -> dict[str, Any]:
        """The options that fix the shapes of the weights (must match to resume or load)."""
        from medimp.train.objectives import create_objective

        arch: dict[str, Any] = {
            "method": self.method,
            "image_encoder": self.image_encoder.model_dump(mode="json"),
            "embed_dim": self.embed_dim,
            "loss": self.loss.name,
            **create_objective(self.method, self).architecture(),
        }
        if self.phase_mask != "zero":  # the encoder's input channels
            arch["phase_mask"] = self.phase_mask
        return arch


# options that say how a run is executed, not what it computes: a resumed run may change them
RUNTIME_OPTIONS = ("stop_after_epochs", "num_workers", "in_memory", "log_every_n_steps", "mlflow",
                   "cache_dir", "accelerator", "devices", "strategy", "num_nodes", "compile",
                   "cudnn_benchmark", "dist_timeout_minutes", "optim.fused", "precision",
                   "channels_last", "micro_batch_size")


def config_changes(saved: dict[str, Any], new: dict[str, Any], prefix: str = "",
                   ignore: tuple[str, ...] = RUNTIME_OPTIONS) -> list[str]:
    """``"name: before -> after"`` for every option that differs between two config mappings
    (``model_dump(mode="json")``), but the ``ignore``d ones."""
    out = []
    for key in sorted(set(saved) | set(new)):
        name = prefix + key
        a, b = saved.get(key), new.get(key)
        if name in ignore or a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict) and name not in (
                "method_options", "preprocess", "augment", "image_encoder.kwargs"):
            out += config_changes(a, b, f"{name}.", ignore)
        else:
            out.append(f"{name}: {a!r} -> {b!r}")
    return out


def option_names(model: type[BaseModel] | None = None, prefix: str = "") -> list[str]:
    """Every option of the pretraining config as a dotted name (``optim.lr``), groups included."""
    out: list[str] = []
    for name, field in (model or PretrainConfig).model_fields.items():
        out.append(prefix + name)
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            out += option_names(ann, f"{prefix}{name}.")
    return out


def _unknown_option(key: str) -> str:
    """'unknown option' and the closest valid names: in the same group first, then anywhere."""
    names = option_names()
    group, _, leaf = key.rpartition(".")
    siblings = [n.rpartition(".")[2] for n in names if n.rpartition(".")[0] == group]
    close = [f"{group}.{m}" if group else m
             for m in difflib.get_close_matches(leaf, siblings, n=3, cutoff=0.6)]
    if not close:  # a misspelt group, or the right name in the wrong group (lr for optim.lr)
        close = difflib.get_close_matches(key, names, n=3, cutoff=0.75) or [
            n for n in names if difflib.get_close_matches(
                leaf, [n.rpartition(".")[2]], cutoff=0.8)][:3]
    if close:
        return f"unknown option; did you mean {' or '.join(close)}?"
    return "unknown option; see docs/train.md for the options"


def _format_error(exc: ValidationError, source: str) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err["loc"]) or "(top level)"
        msg = _unknown_option(loc) if err["type"] == "extra_forbidden" else err["msg"]
        parts.append(f"{loc}: {msg}")
    return f"{source}: invalid pretraining config: " + "; ".join(parts)


def _validate(raw: dict[str, Any], source: str) -> PretrainConfig:
    try:
        return PretrainConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_error(exc, source)) from None
    except ValueError as exc:  # PreprocessConfig / AugmentConfig problems
        raise ConfigError(f"{source}: invalid pretraining config: {exc}") from None


def load_config(path: str | os.PathLike[str] | None = None,
                overrides: list[str] | dict[str, Any] | None = None) -> PretrainConfig:
    """Read a YAML config (or start from the defaults) and apply ``key.sub=value`` overrides.

    Raises:
        ConfigError: the file is missing or not YAML, a key is unknown, a value has a wrong type.
    """
    raw: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        path = Path(path)
        source = str(path)
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found")
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: expected a mapping of options at the top level")
        raw = loaded
    if overrides:
        raw = apply_overrides(raw, overrides)
        source += " + overrides"
    return _validate(raw, source)


def apply_overrides(raw: dict[str, Any], overrides: list[str] | dict[str, Any]) -> dict[str, Any]:
    """Return a copy of ``raw`` with dotted overrides applied (``optim.lr=1e-4``).

    Values of ``"key=value"`` strings are parsed as YAML (numbers, lists, null, true/false).
    """
    out = _deepcopy(raw)
    items: list[tuple[str, Any]]
    if isinstance(overrides, dict):
        items = list(overrides.items())
    else:
        items = []
        for item in overrides:
            if "=" not in item:
                raise ConfigError(f"override {item!r}: expected KEY=VALUE, e.g. optim.lr=1e-4")
            key, value = item.split("=", 1)
            try:
                parsed = yaml.safe_load(value) if value.strip() else None
            except yaml.YAMLError:
                parsed = value
            items.append((key.strip(), parsed))
    for key, value in items:
        parts = key.split(".")
        node = out
        for p in parts[:-1]:
            nxt = node.get(p)
            if nxt is None:
                nxt = {}
                node[p] = nxt
            if not isinstance(nxt, dict):
                raise ConfigError(f"override {key!r}: {p!r} is not a group of options")
            node = nxt
        node[parts[-1]] = value
    return out


def _deepcopy(d: dict[str, Any]) -> dict[str, Any]:
    return {k: _deepcopy(v) if isinstance(v, dict) else v for k, v in d.items()}


def save_config(config: PretrainConfig, path: str | os.PathLike[str]) -> None:
    """Write the config as YAML (atomically), every option spelled out."""
    text = yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
    atomic_write_text(path, text)


def config_from_dict(raw: dict[str, Any], source: str) -> PretrainConfig:
    """Validate a mapping (e.g. from a run's ``config.yaml`` or a checkpoint)."""
    return _validate(raw, source)
