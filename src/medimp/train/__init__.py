"""medimp.train: contrastive pretraining (MEDIMP and its baselines), checkpoints, embeddings.

Importing this package is cheap: Lightning and the model stage load when a function runs.
"""

from medimp.train.checkpoint import (
    load_image_encoder,
    load_image_tower,
    load_run_info,
    load_text_tower,
)
from medimp.train.config import (
    ConfigError,
    PretrainConfig,
    TrainError,
    TrainingInterrupted,
    apply_overrides,
    load_config,
    save_config,
)
from medimp.train.embed import embed
from medimp.train.run import pretrain

__all__ = [
    "ConfigError",
    "PretrainConfig",
    "TrainError",
    "TrainingInterrupted",
    "apply_overrides",
    "embed",
    "load_config",
    "load_image_encoder",
    "load_image_tower",
    "load_run_info",
    "load_text_tower",
    "pretrain",
    "save_config",
]
