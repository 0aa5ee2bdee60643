"""Dilated (DeepLab-style) ResNet-18/34/50/101 as a staged encoder (spec thesis §1.2–1.3).

He et al., "Deep Residual Learning for Image Recognition", CVPR 2016 (BasicBlock, Bottleneck
with the stride on the 3×3 conv as in torchvision's "ResNet v1.5"); Chen et al., "Rethinking
Atrous Convolution for Semantic Image Segmentation" (DeepLabv3), 2017: the last strides are
replaced by atrous (dilated) convolutions so the output stride is 8 or 16.

Stages (P − 1 = 5): ``[stem (conv1+bn1+relu+maxpool), layer1, layer2, layer3, layer4]``. Each
stage's own ``state_dict`` keys are torchvision's names (``conv1.weight``, ``layer1.0.conv1.weight``,
``layer2.0.downsample.0.weight``, …), so with the ``stages.<i>.`` prefix stripped the encoder's
keys are exactly those of ``torchvision.models.resnet{depth}()`` without ``fc``, and ImageNet
weights load (:func:`.pretrained.load_pretrained`).
"""
from __future__ import annotations

from torch import nn

from mtl_platform.contracts import StagedEncoder

from .pretrained import load_pretrained


def _conv3x3(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)


def _downsample(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))


class BasicBlock(nn.Module):
    """Two 3×3 convs with an identity (or 1×1 projection) shortcut (ResNet-18/34)."""

    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int = 1, dilation: int = 1,
                 downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = _conv3x3(cin, planes, stride, dilation)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes, 1, dilation)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1×1 reduce, 3×3 (strided/dilated), 1×1 expand ×4, with a shortcut (ResNet-50/101)."""

    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1, dilation: int = 1,
                 downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride, dilation)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class Stem(nn.Module):
    """conv1 7×7/2 + bn1 + ReLU + 3×3/2 max-pool: stage 0, output stride 4."""

    def __init__(self, width: int, in_channels: int = 3):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)

    def forward(self, x):
        return self.maxpool(self.relu(self.bn1(self.conv1(x))))


class Layer(nn.Module):
    """One ResNet layer, held under its torchvision name (``layer1``..``layer4``) so the
    stage's keys read ``layer3.0.conv1.weight``."""

    def __init__(self, name: str, blocks: nn.Sequential):
        super().__init__()
        self.name = name
        self.add_module(name, blocks)

    def forward(self, x):
        return self._modules[self.name](x)


_ARCH = {18: (BasicBlock, (2, 2, 2, 2)), 34: (BasicBlock, (3, 4, 6, 3)),
         50: (Bottleneck, (3, 4, 6, 3)), 101: (Bottleneck, (3, 4, 23, 3))}
# output stride → (layer3 dilated?, layer4 dilated?)
_DILATE = {8: (True, True), 16: (False, True), 32: (False, False)}


def _make_layer(block, cin: int, planes: int, n: int, stride: int, dilation: int,
                dilate: bool) -> tuple[nn.Sequential, int, int]:
    """torchvision's ``replace_stride_with_dilation`` rule: a dilated layer keeps stride 1,
    its first block uses the previous dilation and the others ``dilation * stride``."""
    previous = dilation
    if dilate:
        dilation, stride = dilation * stride, 1
    cout = planes * block.expansion
    down = _downsample(cin, cout, stride) if stride != 1 or cin != cout else None
    blocks = [block(cin, planes, stride, previous, down)]
    blocks += [block(cout, planes, 1, dilation) for _ in range(n - 1)]
    return nn.Sequential(*blocks), cout, dilation


def _down(size: int) -> int:
    """Spatial size after a stride-2 conv/pool with 'same' padding: ⌈size / 2⌉."""
    return (size - 1) // 2 + 1


def resnet_encoder(depth: int, image_size: tuple[int, int], width: int = 64, output_stride: int = 8,
                   pretrained: str | None = None, in_channels: int = 3,
                   where: str = "pretrained") -> StagedEncoder:
    """A DeepLab ResNet-``depth`` (18, 34, 50 or 101) with 5 stages.

    ``width`` scales every channel count (64 = the standard network; 8 or 16 = a narrow CPU
    variant). ``output_stride`` 8 dilates layer3 (2) and layer4 (4), 16 only layer4 (2), 32
    none. ``pretrained``: a local weights file or a torchvision weights name
    (``IMAGENET1K_V1``, ``ResNet50_Weights.IMAGENET1K_V2``), loaded by
    :func:`.pretrained.load_pretrained`; ``where`` names the setting in its errors.
    """
    if depth not in _ARCH:
        raise ValueError(f"resnet depth must be one of {sorted(_ARCH)}, got {depth!r}")
    if output_stride not in _DILATE:
        raise ValueError(f"output_stride must be one of {sorted(_DILATE)}, got {output_stride!r}")
    if int(width) < 1:
        raise ValueError(f"width must be a positive integer, got {width!r}")
    h, w = (int(s) for s in image_size)
    if h < 1 or w < 1:
        raise ValueError(f"image_size must be two positive integers, got {image_size!r}")
    width = int(width)
    block, counts = _ARCH[depth]
    stages: list[nn.Module] = [Stem(width, in_channels)]
    h, w = _down(_down(h)), _down(_down(w))
    shapes = [(width, h, w)]
    cin, dilation = width, 1
    dilate = (False, False) + _DILATE[output_stride]
    for i, n in enumerate(counts):
        stride = 1 if i == 0 else 2
        blocks, cin, dilation = _make_layer(block, cin, width * 2 ** i, n, stride, dilation, dilate[i])
        stages.append(Layer(f"layer{i + 1}", blocks))
        if stride == 2 and not dilate[i]:
            h, w = _down(h), _down(w)
        shapes.append((cin, h, w))
    _init(stages)
    encoder = StagedEncoder(stages, out_shape=shapes[-1], stage_shapes=shapes)
    if pretrained:
        load_pretrained(encoder, pretrained, where, arch=f"resnet{depth}")
    return encoder


def _init(stages: list[nn.Module]) -> None:
    """torchvision's initialisation: Kaiming-normal (fan_out) convs, BN weight 1 and bias 0."""
    for stage in stages:
        for m in stage.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
