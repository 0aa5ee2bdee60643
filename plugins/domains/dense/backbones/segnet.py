"""MTAN's SegNet as a staged encoder-decoder (Liu et al., "End-to-End Multi-Task Learning with
Attention", CVPR 2019; Badrinarayanan et al., "SegNet", TPAMI 2017).

Five encoder blocks (conv3×3-BN-ReLU ×2, ×2, ×3, ×3, ×3, each followed by a 2×2 max-pool)
and five mirrored decoder blocks (×3, ×3, ×3, ×2, ×2 convs) back to full resolution, with
channel widths ``width × (1, 2, 4, 8, 8)`` (64, 128, 256, 512, 512 at width 64, as MTAN).

Deviation from MTAN: SegNet upsamples with max-unpooling at the encoder's pooling indices,
a second tensor that cannot cross a one-tensor stage boundary; each decoder block here starts
with a parameter-free bilinear upsampling by 2 instead (the parameter count is unchanged).
"""
from __future__ import annotations

from torch import nn

from mtl_platform.contracts import StagedEncoder


def _conv(cin: int, cout: int) -> list[nn.Module]:
    """MTAN's ``conv_layer``: 3×3 conv (padding 1) + BN + ReLU."""
    return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


def _block(channels: list[int]) -> list[nn.Module]:
    layers: list[nn.Module] = []
    for cin, cout in zip(channels, channels[1:]):
        layers += _conv(cin, cout)
    return layers


def segnet_encoder(image_size: tuple[int, int], width: int = 64, in_channels: int = 3) -> StagedEncoder:
    """The 10 blocks as 10 stages (P = 11): 5 encoder blocks ending at 1/32 resolution with
    ``8·width`` channels, then 5 decoder blocks back to ``image_size`` with ``width`` channels.

    ``image_size`` (H, W) must be divisible by 32 (five 2×2 poolings).
    """
    h, w = (int(s) for s in image_size)
    if h < 32 or w < 32 or h % 32 or w % 32:
        raise ValueError(f"segnet needs an image_size divisible by 32 (five 2x2 poolings), "
                         f"got {tuple(image_size)}")
    if int(width) < 1:
        raise ValueError(f"width must be a positive integer, got {width!r}")
    f = [int(width) * m for m in (1, 2, 4, 8, 8)]
    # MTAN: encoder_block[i] + conv_block_enc[i] and decoder_block[i] + conv_block_dec[i]
    enc = [[in_channels, f[0], f[0]], [f[0], f[1], f[1]], [f[1], f[2], f[2], f[2]],
           [f[2], f[3], f[3], f[3]], [f[3], f[4], f[4], f[4]]]
    dec = [[f[4], f[3], f[3], f[3]], [f[3], f[2], f[2], f[2]], [f[2], f[1], f[1], f[1]],
           [f[1], f[0], f[0]], [f[0], f[0], f[0]]]
    stages: list[nn.Module] = []
    shapes: list[tuple[int, int, int]] = []
    for i, channels in enumerate(enc):
        stages.append(nn.Sequential(*_block(channels), nn.MaxPool2d(2, 2)))
        shapes.append((channels[-1], h >> (i + 1), w >> (i + 1)))
    for i, channels in enumerate(dec):
        up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
        stages.append(nn.Sequential(up, *_block(channels)))
        shapes.append((channels[-1], h >> (4 - i), w >> (4 - i)))
    for stage in stages:  # MTAN's initialisation
        for m in stage.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_normal_(m.weight)
                nn.init.zeros_(m.bias)
    return StagedEncoder(stages, out_shape=shapes[-1], stage_shapes=shapes)
