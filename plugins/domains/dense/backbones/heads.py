"""Per-task dense-prediction heads: DeepLab's ASPP head and MTAN's SegNet head.

Both end at the full ``image_size`` (bilinear upsampling when the features are smaller) and,
with ``normalize=True`` (surface normals), L2-normalise the output along channels as MTAN does.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class DenseHead(nn.Module):
    """``body`` followed by bilinear upsampling to ``image_size`` and optional L2 normalisation."""

    def __init__(self, body: nn.Module, image_size: tuple[int, int], normalize: bool = False):
        super().__init__()
        self.body = body
        self.image_size = tuple(int(s) for s in image_size)
        self.normalize = bool(normalize)

    def forward(self, x):
        y = self.body(x)
        if tuple(y.shape[-2:]) != self.image_size:
            y = F.interpolate(y, size=self.image_size, mode="bilinear", align_corners=False)
        return F.normalize(y, p=2, dim=1) if self.normalize else y


def _conv_bn_relu(cin: int, cout: int, kernel: int = 1, dilation: int = 1) -> nn.Sequential:
    pad = dilation * (kernel - 1) // 2
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, padding=pad, dilation=dilation, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class ImagePooling(nn.Module):
    """ASPP's image-level feature: global average pool, 1×1 conv-BN-ReLU, broadcast back.

    Its BatchNorm sees one value per channel and sample, so training needs batches of ≥ 2."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.conv = _conv_bn_relu(cin, cout)

    def forward(self, x):
        return self.conv(self.pool(x)).expand(-1, -1, *x.shape[-2:])


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling (Chen et al. 2017, DeepLabv3 §3.3): a 1×1 conv, one 3×3
    conv per atrous rate and image-level pooling in parallel, concatenated and projected by a
    1×1 conv-BN-ReLU with dropout 0.5."""

    def __init__(self, cin: int, rates: tuple[int, ...], hidden: int):
        super().__init__()
        self.branches = nn.ModuleList([_conv_bn_relu(cin, hidden)]
                                      + [_conv_bn_relu(cin, hidden, 3, r) for r in rates]
                                      + [ImagePooling(cin, hidden)])
        self.project = nn.Sequential(*_conv_bn_relu(hidden * (len(rates) + 2), hidden), nn.Dropout(0.5))

    def forward(self, x):
        return self.project(torch.cat([branch(x) for branch in self.branches], dim=1))


def aspp_head(in_channels: int, out_channels: int, image_size: tuple[int, int],
              rates: tuple[int, ...] = (6, 12, 18), width: int = 64, normalize: bool = False) -> DenseHead:
    """DeepLabv3's head (as torchvision's and LibMTL's ``DeepLabHead``): ASPP, a 3×3
    conv-BN-ReLU, a 1×1 classifier to ``out_channels``, bilinear upsampling to ``image_size``.

    ``hidden`` = 256·width/64 channels. DeepLabv3 uses rates (6, 12, 18) at output stride 16
    and doubles them at 8 (torchvision and LibMTL use (12, 24, 36)). At width 64 on ResNet-50
    three such heads plus the encoder give the thesis' HPS NYUv2 size, 71.89M (spec §1.3).
    """
    hidden = max(1, 256 * int(width) // 64)
    body = nn.Sequential(ASPP(in_channels, tuple(rates), hidden),
                         *_conv_bn_relu(hidden, hidden, 3),
                         nn.Conv2d(hidden, out_channels, 1))
    return DenseHead(body, image_size, normalize)


def conv_head(in_channels: int, out_channels: int, image_size: tuple[int, int],
              normalize: bool = False) -> DenseHead:
    """MTAN's SegNet task head (``conv_layer(..., pred=True)``): a 3×3 conv keeping the
    channels, then a 1×1 conv to ``out_channels``; upsampled to ``image_size`` if needed."""
    body = nn.Sequential(nn.Conv2d(in_channels, in_channels, 3, padding=1),
                         nn.Conv2d(in_channels, out_channels, 1))
    for m in body:  # MTAN's initialisation
        nn.init.xavier_normal_(m.weight)
        nn.init.zeros_(m.bias)
    return DenseHead(body, image_size, normalize)
