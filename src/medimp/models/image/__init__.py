"""3D image encoders; importing this package registers them by name."""

from medimp.models.image import clip_resnet, resnet, tiny, vit  # noqa: F401  (registration)
from medimp.models.image.clip_resnet import AttentionPool3d, Bottleneck3d, ModifiedResNet3d
from medimp.models.image.resnet import ResNet3dEncoder
from medimp.models.image.tiny import TinyCNN3d
from medimp.models.image.vit import ViT3dEncoder

__all__ = [
    "AttentionPool3d",
    "Bottleneck3d",
    "ModifiedResNet3d",
    "ResNet3dEncoder",
    "TinyCNN3d",
    "ViT3dEncoder",
]
