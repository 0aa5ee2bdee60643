"""The standard train-time augmentation of the NYUv2 / CityScapes multi-task benchmarks.

MTAN (Liu et al. 2019, ``im2im_pred/create_dataset.py``, "RandomScaleCrop", credited there to
Jialong Wu) and LibMTL (``examples/nyu/create_dataset.py``) augment NYUv2 training images so:
pick a scale ``s`` from (1.0, 1.2, 1.5), crop a random ``(int(H/s), int(W/s))`` window, resize it
back to ``(H, W)`` (image bilinear with ``align_corners=True``, labels and depth nearest, depth
divided by ``s`` — zooming in by ``s`` looks like standing ``s`` times closer), then with
probability 1/2 flip everything horizontally and negate the normals' x component.

Differences from those implementations, on purpose:

* normals are resized **nearest** (MTAN's current code and LibMTL resize them bilinearly, which
  blends unit vectors with each other and with the all-zero invalid pixels, so they are no longer
  unit or zero; an earlier MTAN revision used nearest);
* a ``disparity`` kind (inverse depth, as in the preprocessed CityScapes) is *multiplied* by
  ``s`` — the physically consistent counterpart of ``depth / s``, as in Auto-Lambda's
  ``DataTransform``; copies of the NYUv2 recipe applied to CityScapes often divide it instead;
* every random draw comes from the ``torch.Generator`` the caller passes (MTAN/LibMTL use the
  global ``random`` / ``torch`` state), so a sample is a pure function of (seed, epoch, index)
  (DESIGN.md §10): see :func:`sample_generator`.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from mtl_platform.batches import mix_seed

#: how each kind of target is resampled: nearest for all but the image; the value rescaling
KINDS = ("segmentation", "depth", "disparity", "normals", "saliency", "dense")

def sample_seed(seed: int, epoch: int, index: int) -> int:
    """The seed of one sample's augmentation draws: :func:`mtl_platform.batches.mix_seed`."""
    return mix_seed(seed, epoch, index)


def sample_generator(seed: int, epoch: int, index: int) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded by :func:`sample_seed` for one sample of one epoch."""
    return torch.Generator().manual_seed(sample_seed(seed, epoch, index))


def _nearest(t: Tensor, rows: Tensor, cols: Tensor) -> Tensor:
    """Gather ``rows`` × ``cols`` of the last two dims: a crop plus nearest resize, any dtype."""
    return t.index_select(-2, rows).index_select(-1, cols)


def mirror(image: Tensor, targets: Mapping[str, Tensor], kinds: Mapping[str, str]) -> tuple[Tensor, dict[str, Tensor]]:
    """A horizontal flip of a sample (new tensors): every map mirrored, the x component (channel 0)
    of ``normals`` targets negated."""
    out = {}
    for task, t in targets.items():
        t = torch.flip(t, dims=[-1])
        if kinds[task] == "normals":
            t[..., 0, :, :] = -t[..., 0, :, :]
        out[task] = t
    return torch.flip(image, dims=[-1]), out


def scale_crop_flip(image: Tensor, targets: Mapping[str, Tensor], kinds: Mapping[str, str],
                    generator: torch.Generator, scales: Sequence[float] = (1.0, 1.2, 1.5),
                    flip: bool = True) -> tuple[Tensor, dict[str, Tensor]]:
    """Random scale-crop (and horizontal flip) of one sample; returns new tensors.

    ``image`` is float (C, H, W); ``targets[task]`` is (H, W) or (C, H, W) with the same H, W;
    ``kinds[task]`` is one of :data:`KINDS`: ``segmentation`` / ``saliency`` (integer maps,
    ignore values such as −1 kept), ``depth`` (divided by ``s``; 0 = invalid stays 0),
    ``disparity`` (inverse depth, multiplied by ``s``), ``normals`` (x component negated on a
    flip), ``dense`` (any float map, values unchanged). Draws, in this order, from
    ``generator`` only: the scale, the crop's top row, its left column, the flip.
    """
    if not scales:
        raise ValueError("scales must not be empty")
    height, width = image.shape[-2:]
    k = int(torch.randint(len(scales), (1,), generator=generator))
    s = float(scales[k])
    if s < 1.0:
        raise ValueError(f"scales must be >= 1 (a crop inside the image), got {s}")
    h, w = max(1, int(height / s)), max(1, int(width / s))
    top = int(torch.randint(height - h + 1, (1,), generator=generator))
    left = int(torch.randint(width - w + 1, (1,), generator=generator))
    flipped = bool(torch.rand(1, generator=generator) < 0.5) and flip

    resize = (h, w) != (height, width)
    if resize:
        crop = image[..., top:top + h, left:left + w]
        squeeze = crop.dim() == 3
        out_image = F.interpolate(crop.unsqueeze(0) if squeeze else crop, size=(height, width),
                                  mode="bilinear", align_corners=True)
        out_image = out_image.squeeze(0) if squeeze else out_image
        # nearest source pixel of each output pixel, as F.interpolate(mode="nearest"): floor(o * in / out)
        rows = top + torch.arange(height) * h // height
        cols = left + torch.arange(width) * w // width
    else:
        out_image = image.clone()

    out: dict[str, Tensor] = {}
    for task, target in targets.items():
        kind = kinds[task]
        if kind not in KINDS:
            raise ValueError(f"unknown target kind {kind!r} of task {task!r}; kinds: {', '.join(KINDS)}")
        if tuple(target.shape[-2:]) != (height, width):
            raise ValueError(f"target {task!r} is {tuple(target.shape[-2:])}, image is {(height, width)}")
        t = _nearest(target, rows, cols) if resize else target.clone()
        if kind == "depth" and s != 1.0:
            t = t / s
        elif kind == "disparity" and s != 1.0:
            t = t * s
        out[task] = t

    if flipped:
        out_image, out = mirror(out_image, out, kinds)
    return out_image, out
