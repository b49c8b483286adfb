"""3D image encoders; importing this package registers them by name."""

from medimp.models.image import resnet, tiny  # noqa: F401  (registration side effects)
from medimp.models.image.resnet import ResNet3dEncoder
from medimp.models.image.tiny import TinyCNN3d

__all__ = ["ResNet3dEncoder", "TinyCNN3d"]
