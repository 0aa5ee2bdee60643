"""The ViT-B/16 generator for UDA (SSRT, Sun et al., CVPR 2022; spec gradients.md §1.8):
torchvision's ``vit_b_16`` cut into stages — the patch embedding (with the class token and
the position embedding), one stage per transformer block, then the final LayerNorm, the class
token's features and a bottleneck fc-BN-ReLU-dropout (SSRT's) as the last stage. Stage i's
output is block i's input, so SSRT's perturbation layers index the stages directly.

ImageNet weights come from a LOCAL file only: a ``torch.save``'d state_dict of torchvision's
``vit_b_16`` (e.g. ``ViT_B_16_Weights.IMAGENET1K_V1``, saved once on a machine with internet).
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from mtl_platform.contracts import StagedEncoder
from mtl_platform.errors import UserError

VIT_B_16 = {"width": 768, "layers": 12, "heads": 12, "mlp": 3072, "patch": 16}


class PatchEmbedding(nn.Module):
    """Patches → tokens, the class token prepended, plus the position embedding (torchvision's
    ``_process_input`` and the start of its ``Encoder.forward``)."""

    def __init__(self, vit: nn.Module):
        super().__init__()
        self.conv_proj = vit.conv_proj
        self.class_token = vit.class_token
        self.pos_embedding = vit.encoder.pos_embedding
        self.dropout = vit.encoder.dropout

    def forward(self, x: Tensor) -> Tensor:
        tokens = self.conv_proj(x).flatten(2).transpose(1, 2)
        tokens = torch.cat([self.class_token.expand(len(tokens), -1, -1), tokens], dim=1)
        return self.dropout(tokens + self.pos_embedding)


class ClassTokenBottleneck(nn.Module):
    """The final LayerNorm, the class token's features, then SSRT's bottleneck
    fc-BatchNorm-ReLU-dropout(0.5), its fc drawn from N(0, 0.005²) with bias 0.1 as in SSRT's code
    (``bottleneck`` 0: none)."""

    def __init__(self, ln: nn.Module, width: int, bottleneck: int):
        super().__init__()
        self.ln = ln
        if not bottleneck:  # 0: the class token's features alone
            self.bottleneck = nn.Identity()
            return
        self.bottleneck = nn.Sequential(nn.Linear(width, bottleneck), nn.BatchNorm1d(bottleneck), nn.ReLU(),
                                        nn.Dropout(0.5))
        nn.init.normal_(self.bottleneck[0].weight, 0.0, 0.005)
        nn.init.constant_(self.bottleneck[0].bias, 0.1)

    def forward(self, tokens: Tensor) -> Tensor:
        return self.bottleneck(self.ln(tokens)[:, 0])


def vit_generator(channels: int, size: int, bottleneck: int, pretrained: str | None,
                  width: int = 768, layers: int = 12, heads: int = 12, mlp: int = 3072,
                  patch: int = 16) -> StagedEncoder:
    """ViT stages + bottleneck. The defaults are ViT-B/16; a smaller ``width``/``layers``
    builds the same network in miniature (tests). ``pretrained``: a local weights file."""
    from torchvision.models.vision_transformer import VisionTransformer

    if size % patch:
        raise UserError(f"domain.vit.patch: the image side {size} is not a multiple of the patch size {patch}")
    if width % heads:
        raise UserError(f"domain.vit.heads: {heads} heads do not divide the width {width}")
    vit = VisionTransformer(image_size=size, patch_size=patch, num_layers=layers, num_heads=heads,
                            hidden_dim=width, mlp_dim=mlp)
    if pretrained:
        load_vit_weights(vit, pretrained, channels)
    elif channels != vit.conv_proj.in_channels:
        vit.conv_proj = nn.Conv2d(channels, width, kernel_size=patch, stride=patch)
    tokens = (size // patch) ** 2 + 1
    stages = [PatchEmbedding(vit), *vit.encoder.layers, ClassTokenBottleneck(vit.encoder.ln, width, bottleneck)]
    out = bottleneck or width
    shapes = [(tokens, width)] * (1 + layers) + [(out,)]
    return StagedEncoder(stages, out_shape=(out,), stage_shapes=shapes)


def load_vit_weights(vit: nn.Module, spec: str, channels: int) -> None:
    """torchvision ``vit_b_16`` weights from the local file ``spec`` (one line if it is absent,
    unreadable or does not fit)."""
    from mtl_platform_plugins.domains.dense.backbones import load_pretrained

    path = Path(str(spec)).expanduser()
    if not path.is_file():
        raise UserError(f"domain.pretrained: no ViT weights file {str(spec)!r}; give a local torch.save'd "
                        "state_dict of torchvision's vit_b_16 (e.g. ViT_B_16_Weights.IMAGENET1K_V1, saved once "
                        "with internet), or set domain.pretrained: null")
    if channels != 3:
        raise UserError(f"domain.pretrained: ImageNet ViT weights need 3-channel images, the data has {channels}; "
                        "set domain.data.channels: 3 or pretrained: null")
    load_pretrained(vit, str(path), "domain.pretrained", arch="vit_b_16")
