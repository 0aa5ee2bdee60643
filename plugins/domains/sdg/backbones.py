"""Encoders of the SDG domain: the digits ConvNet of the SDG digit benchmarks and torchvision's
ResNet-18/50 (features after global average pooling, ``fc`` removed). Each is a
:class:`~mtl_platform.contracts.StagedEncoder` with ``out_shape = (features,)``; the classifier
is the head (:func:`digits_head`, a linear layer, for every backbone).

``width`` scales every layer (1.0: the published network; small values give narrow CPU test
variants). ``pretrained``: a local ``torch.save``'d state_dict (loaded with
``weights_only=True``; for a ResNet, torchvision's key names, e.g.
``torch.save(torchvision.models.resnet50(weights="IMAGENET1K_V1").state_dict(), path)``;
``fc.*`` entries are ignored) or a torchvision weights name, through
:func:`mtl_platform_plugins.domains.dense.backbones.pretrained.load_pretrained`; a missing or
unreadable file, or weights that do not fit, are a ``UserError`` naming ``where``.
"""
from __future__ import annotations

from typing import Callable

from torch import nn

from mtl_platform.contracts import StagedEncoder
from mtl_platform_plugins.domains.dense.backbones.pretrained import load_pretrained
from mtl_platform_plugins.domains.dense.backbones.resnet import resnet_encoder

__all__ = ["BACKBONES", "digits_convnet", "digits_head", "resnet18", "resnet50"]


def _scaled(channels: int, width: float) -> int:
    return max(1, int(round(channels * width)))


def digits_convnet(channels: int = 3, size: int = 32, width: float = 1.0, pretrained: str | None = None,
                   where: str = "domain.pretrained") -> StagedEncoder:
    """The ConvNet of the SDG digit experiments (Volpi et al., "Generalizing to unseen domains via
    adversarial data augmentation", NeurIPS 2018, §4.1; M-ADA, Qiao et al., CVPR 2020, §4.1):
    conv 5×5 64 – ReLU – max-pool 2, conv 5×5 128 – ReLU – max-pool 2 (no padding), fc 1024 –
    ReLU, fc 1024 – ReLU: 1024 features (128·5·5 = 3200 inputs to the first fc at 32×32).
    Three stages: the two conv blocks and the fc block."""
    c1, c2, hidden = _scaled(64, width), _scaled(128, width), _scaled(1024, width)
    first = (size - 4) // 2
    side = (first - 4) // 2
    if side < 1:
        raise ValueError(f"digits_convnet needs images of at least 12×12 pixels, got {size}")
    stages = [nn.Sequential(nn.Conv2d(channels, c1, 5), nn.ReLU(), nn.MaxPool2d(2)),
              nn.Sequential(nn.Conv2d(c1, c2, 5), nn.ReLU(), nn.MaxPool2d(2)),
              nn.Sequential(nn.Flatten(), nn.Linear(c2 * side * side, hidden), nn.ReLU(),
                            nn.Linear(hidden, hidden), nn.ReLU())]
    encoder = StagedEncoder(stages, out_shape=(hidden,),
                            stage_shapes=[(c1, first, first), (c2, side, side), (hidden,)])
    if pretrained:
        load_pretrained(encoder, pretrained, where)
    return encoder


def digits_head(features: int, classes: int) -> nn.Linear:
    """The classifier on top of any backbone: fc features → classes (the ConvNet's last layer)."""
    return nn.Linear(features, classes)


def _resnet(depth: int, channels: int, size: int, width: float, pretrained: str | None,
            where: str) -> StagedEncoder:
    """torchvision's ResNet-``depth`` (stem, layer1…4, output stride 32) and global average
    pooling as a last stage: 512 (ResNet-18) or 2048 (ResNet-50) features at width 1."""
    trunk = resnet_encoder(depth, (size, size), width=_scaled(64, width), output_stride=32,
                           pretrained=pretrained, in_channels=channels, where=where)
    features = trunk.out_shape[0]
    pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
    return StagedEncoder([*trunk.stages, pool], out_shape=(features,),
                         stage_shapes=[*trunk.stage_shapes, (features,)])


def resnet18(channels: int = 3, size: int = 224, width: float = 1.0, pretrained: str | None = None,
             where: str = "domain.pretrained") -> StagedEncoder:
    """ResNet-18 (He et al., CVPR 2016), 512 features: the PACS/VLCS/Office-Home backbone of
    DomainBed and of the DGE paper."""
    return _resnet(18, channels, size, width, pretrained, where)


def resnet50(channels: int = 3, size: int = 224, width: float = 1.0, pretrained: str | None = None,
             where: str = "domain.pretrained") -> StagedEncoder:
    """ResNet-50 (He et al., CVPR 2016), 2048 features."""
    return _resnet(50, channels, size, width, pretrained, where)


#: every backbone by its config name; each takes (channels, size, width, pretrained, where)
BACKBONES: dict[str, Callable[..., StagedEncoder]] = {
    "digits_convnet": digits_convnet, "resnet18": resnet18, "resnet50": resnet50}
