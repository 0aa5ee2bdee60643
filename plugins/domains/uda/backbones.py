"""Generators G for UDA: LeNet for digits (as in tllib and the GH paper's digit experiments),
and ResNet-50/101 + bottleneck for Office/VisDA/DomainNet (GH paper §5.1; spec gradients.md §1.8)."""
from __future__ import annotations

from torch import nn

from mtl_platform.contracts import StagedEncoder


def lenet_generator(channels: int, size: int) -> StagedEncoder:
    """conv(20, 5)-pool-ReLU, conv(50, 5)-dropout-pool-ReLU, fc(500)-ReLU-dropout: 500-d features."""
    side = ((size - 4) // 2 - 4) // 2
    stages = [nn.Sequential(nn.Conv2d(channels, 20, 5), nn.MaxPool2d(2), nn.ReLU()),
              nn.Sequential(nn.Conv2d(20, 50, 5), nn.Dropout2d(0.5), nn.MaxPool2d(2), nn.ReLU()),
              nn.Sequential(nn.Flatten(), nn.Linear(50 * side * side, 500), nn.ReLU(), nn.Dropout(0.5))]
    return StagedEncoder(stages, out_shape=(500,), stage_shapes=[(20, (size - 4) // 2, (size - 4) // 2),
                                                                 (50, side, side), (500,)])


def mcd_digits_generator(channels: int, size: int) -> StagedEncoder:
    """MCD's generator for MNIST/USPS (Saito et al., CVPR 2018, code ``model/usps.py``):
    conv(32, 5)-BN-ReLU-pool, conv(48, 5)-BN-ReLU-pool, flattened (768-d at 28 px). No dropout:
    MCD's classifiers hold it. BatchNorm sees each forward pass's batch, so methods that pass
    target batches through G also adapt its normalisation statistics."""
    first, side = (size - 4) // 2, ((size - 4) // 2 - 4) // 2
    stages = [nn.Sequential(nn.Conv2d(channels, 32, 5), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2)),
              nn.Sequential(nn.Conv2d(32, 48, 5), nn.BatchNorm2d(48), nn.ReLU(), nn.MaxPool2d(2)),
              nn.Flatten()]
    return StagedEncoder(stages, out_shape=(48 * side * side,),
                         stage_shapes=[(32, first, first), (48, side, side), (48 * side * side,)])


def resnet_generator(depth: int, size: int, bottleneck: int, pretrained: str | None, width: int = 64) -> StagedEncoder:
    """ResNet stages (stem, layer1…4; ImageNet weights from a file or a torchvision name), then
    global average pooling and a bottleneck fc-BN-ReLU (CDAN's 256-d) as the last stage;
    ``bottleneck`` 0: the pooled features alone (GVB's code, ``use_bottleneck=False``)."""
    from mtl_platform_plugins.domains.dense.backbones import resnet_encoder

    trunk = resnet_encoder(depth, (size, size), width=width, output_stride=32, pretrained=pretrained,
                           where="domain.pretrained")
    channels = trunk.out_shape[0]
    if not bottleneck:
        head, out = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten()), channels
    else:
        head, out = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, bottleneck),
                                  nn.BatchNorm1d(bottleneck), nn.ReLU()), bottleneck
    return StagedEncoder([*trunk.stages, head], out_shape=(out,), stage_shapes=[*trunk.stage_shapes, (out,)])
