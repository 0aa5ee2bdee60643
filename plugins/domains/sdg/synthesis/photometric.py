"""Rotation and brightness domains: the single-transform variants of the DGE paper's Table 9.

``rotation``: each image turned by an angle uniform in [−degrees, degrees] (counter-clockwise
positive, about the image centre, as torchvision's ``rotate``), the corners filled with 0.
``brightness``: each image scaled by a factor uniform in ``factor_range`` and clamped to
[0, 1] (torchvision's ``adjust_brightness``). One batched op per domain, with per-sample
parameters each drawn from the sample's own generator (its key).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from mtl_platform.errors import UserError
from mtl_platform.params import Param

from .augmenting import K_PARAM, AugmentingSynthesis
from .keys import uniform


def rotate(images: Tensor, degrees: Tensor, interpolation: str = "bilinear") -> Tensor:
    """``images`` (B, C, H, W) each rotated by ``degrees[i]`` counter-clockwise about its centre,
    0 outside: torchvision's ``v2.functional.rotate`` (``expand=False``, ``fill=0``) per image,
    as one ``grid_sample``. The output pixel at offset (x, y) from the centre (y downwards)
    reads the input at (x cos a − y sin a, x sin a + y cos a)."""
    b, _, h, w = images.shape
    a = torch.deg2rad(degrees.to(torch.float64))
    cos, sin = torch.cos(a), torch.sin(a)
    # affine_grid works in normalised coordinates (x / (w/2), y / (h/2)): rescale the off-diagonal.
    theta = torch.stack([torch.stack([cos, -sin * h / w, torch.zeros_like(a)], 1),
                         torch.stack([sin * w / h, cos, torch.zeros_like(a)], 1)], 1)
    grid = F.affine_grid(theta.to(images.dtype).to(images.device), [b, 1, h, w], align_corners=False)
    return F.grid_sample(images, grid, mode=interpolation, padding_mode="zeros", align_corners=False)


class Rotation(AugmentingSynthesis):
    """K domains, each every image rotated by its own angle uniform in [−degrees, degrees]."""

    name = "rotation"
    params = (K_PARAM,
              Param("degrees", float, 30.0, "angles are uniform in [-degrees, degrees]", bounds="[0, 180]"),
              Param("interpolation", str, "bilinear", "resampling of the rotated image",
                    choices=("bilinear", "nearest")))

    def angles(self, gens: list) -> Tensor:
        return uniform(gens, -self.degrees, self.degrees)

    def apply(self, images: Tensor, gens: list) -> Tensor:
        return rotate(images, self.angles(gens), self.interpolation)


class Brightness(AugmentingSynthesis):
    """K domains, each every image's brightness scaled by its own factor uniform in factor_range."""

    name = "brightness"
    params = (K_PARAM,
              Param("factor_range", list, [0.7, 1.3], "[low, high]: factors are uniform in it",
                    item=float, bounds="[0, inf)"))

    def __init__(self, seed: int = 0, **params):
        super().__init__(seed, **params)
        low_high = self.factor_range
        if len(low_high) != 2 or not low_high[0] <= low_high[1]:
            raise UserError(f"domain.synthesis.factor_range: got {low_high}, expected [low, high] "
                            f"with 0 <= low <= high")

    def factors(self, gens: list) -> Tensor:
        return uniform(gens, *self.factor_range)

    def apply(self, images: Tensor, gens: list) -> Tensor:
        factor = self.factors(gens).to(images.dtype).to(images.device).view(-1, 1, 1, 1)
        return (images * factor).clamp_(0.0, 1.0)
