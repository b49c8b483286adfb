"""``random_init``: the image encoder exported untrained, the floor every objective must beat."""

from __future__ import annotations

from typing import Any

from torch import nn

from medimp.train.errors import ConfigError
from medimp.train.objectives._base import Objective, make_contrastive_loss
from medimp.train.objectives._registry import register_objective

__all__ = ["RandomInit"]


@register_objective
class RandomInit(Objective):
    """Same encoder and projection as every other method, with the weights it was built with."""

    name = "random_init"
    trains = False

    def check(self) -> None:
        # built from image_encoder.pretrained, the "untrained" encoder would be those weights,
        # and the floor of the comparison would silently be a pretrained baseline
        if self.config.image_encoder.pretrained:
            raise ConfigError(
                "method random_init exports the encoder as built, so with "
                f"image_encoder.pretrained={self.config.image_encoder.pretrained} it would "
                "hold those weights, not a random initialisation; drop "
                "image_encoder.pretrained for this method (--set image_encoder.pretrained=null)")

    def build(self, embed_dim: int, **tower_args: Any) -> dict[str, nn.Module]:
        # the temperature of a contrastive run, so model.safetensors holds the same kinds of
        # weights as a trained image-only run
        return {"loss_fn": make_contrastive_loss(self.config)}
