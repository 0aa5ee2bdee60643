"""The domain's images as CLIP's image encoder expects them (spec gradients.md §3.5: CLIP's
input is 224 px with its own normalisation; the data families normalise for ImageNet or to
[−1, 1])."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: CLIP's image normalisation (the statistics of its pre-training images)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
#: ImageNet's, the normalisation the Office/VisDA/DomainNet image lists apply
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ImageAdapter(nn.Module):
    """Undo the data's normalisation (``input_mean``/``input_std``, one value or one per channel),
    repeat a grey channel to RGB, apply CLIP's normalisation and resize (bicubic) to ``size``."""

    def __init__(self, size: int, input_mean: Sequence[float] = IMAGENET_MEAN,
                 input_std: Sequence[float] = IMAGENET_STD):
        super().__init__()
        self.size = int(size)
        for name, value in (("input_mean", input_mean), ("input_std", input_std), ("clip_mean", CLIP_MEAN),
                            ("clip_std", CLIP_STD)):
            self.register_buffer(name, torch.tensor(value, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)

    def forward(self, images: Tensor) -> Tensor:
        x = images * self.input_std + self.input_mean  # back to [0, 1] pixels
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        x = (x - self.clip_mean) / self.clip_std
        if tuple(x.shape[-2:]) != (self.size, self.size):
            x = F.interpolate(x, size=(self.size, self.size), mode="bicubic", align_corners=False)
        return x
