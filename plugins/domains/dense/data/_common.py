"""What the dense data sources share: the data root and its one-line errors, config checks,
image reading and ImageNet normalisation, resizing and crop/pad of maps, the sample pipeline
(resize, then flip and scale-crop drawn from a per-sample generator) and the split dataset."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from mtl_platform.errors import UserError
from mtl_platform.params import Param

from .augment import mirror, sample_generator

#: the config key a wrong path is reported under
ROOT_KEY = "domain.data.root"

#: ImageNet statistics (the backbones are ImageNet-pretrained; Vandenhende et al.'s
#: Multi-Task-Learning-PyTorch normalises PASCAL-Context images with them)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

def image_size_param(default: Sequence[int], help: str) -> Param:
    return Param("image_size", list, list(default), help, item=int, bounds="[1, inf)")


def check_image_size(value, key: str = "domain.data.image_size") -> tuple[int, int]:
    size = tuple(int(v) for v in value)
    if len(size) != 2 or min(size) < 1:
        raise UserError(f"{key}: got {list(value)!r}, expected [height, width], two integers >= 1")
    return size


def check_fraction(value: float, key: str) -> float:
    value = float(value)
    if not 0.0 <= value < 1.0:
        raise UserError(f"{key}: got {value}, expected a number in [0, 1)")
    return value


def listing(folder: Path) -> set[str]:
    """File names in ``folder`` (empty when it cannot be read)."""
    try:
        return set(os.listdir(folder))
    except OSError:
        return set()


def read_image(path: Path) -> np.ndarray:
    """Any image file as a numpy array, as PIL decodes it (palette PNGs give their indices,
    16-bit PNGs uint16/int32)."""
    from PIL import Image

    with Image.open(path) as im:
        return np.array(im)


def read_rgb(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.array(im.convert("RGB"))


def image_tensor(rgb: np.ndarray) -> Tensor:
    """uint8 (H, W, 3) → float32 (3, H, W) in [0, 1], normalised with the ImageNet statistics."""
    t = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).float().div_(255.0)
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return (t - mean) / std


def resize_bilinear(image: Tensor, size: tuple[int, int]) -> Tensor:
    """(C, H, W) float → (C, *size), bilinear, antialiased when shrinking."""
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    return F.interpolate(image.unsqueeze(0), size=size, mode="bilinear", align_corners=False,
                         antialias=True).squeeze(0)


def resize_nearest(t: Tensor, size: tuple[int, int]) -> Tensor:
    """(..., H, W) of any dtype → (..., *size): output pixel o takes input pixel
    floor(o · in / out), as ``F.interpolate(mode="nearest")`` does."""
    height, width = t.shape[-2:]
    if (height, width) == tuple(size):
        return t
    rows = torch.arange(size[0]) * height // size[0]
    cols = torch.arange(size[1]) * width // size[1]
    return t.index_select(-2, rows).index_select(-1, cols)


def unit_or_zero(normals: Tensor) -> Tensor:
    """(3, H, W): every vector scaled to unit length; all-zero vectors stay zero."""
    norm = normals.norm(dim=0, keepdim=True)
    return torch.where(norm > 0, normals / norm.clamp_min(1e-12), torch.zeros_like(normals))


def place(t: Tensor, size: tuple[int, int], offsets: tuple[int, int], fill: float) -> Tensor:
    """Crop or pad the last two dims of ``t`` to ``size``. Per axis: a source longer than the
    target is cropped from ``offset``; a shorter one is pasted at ``offset`` into ``fill``."""
    out = torch.full((*t.shape[:-2], *size), fill, dtype=t.dtype)
    src, dst = [], []
    for n_in, n_out, o in zip(t.shape[-2:], size, offsets):
        if n_in >= n_out:
            src.append(slice(o, o + n_out))
            dst.append(slice(0, n_out))
        else:
            src.append(slice(0, n_in))
            dst.append(slice(o, o + n_in))
    out[..., dst[0], dst[1]] = t[..., src[0], src[1]]
    return out


class DenseSplit(Dataset):
    """One split: ``records`` and a ``reader(record, generator) -> (image, targets)``.

    With ``augment`` the reader gets a generator seeded from (``seed``, epoch, index) — the
    epoch set by :meth:`set_epoch`, the index the sample's position in this split — otherwise
    ``None`` (no augmentation). ``names`` gives each record's name (for messages and tests).
    """

    def __init__(self, records: Sequence, reader: Callable, *, augment: bool, seed: int,
                 names: Sequence[str] | None = None):
        self.records = list(records)
        self.reader = reader
        self.augment = bool(augment)
        self.seed = int(seed)
        self.epoch = 0
        self.names = list(names) if names is not None else [str(r) for r in self.records]

    def set_epoch(self, epoch: int) -> None:
        """The epoch whose augmentation draws the next samples use."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int):
        gen = sample_generator(self.seed, self.epoch, index) if self.augment else None
        return self.reader(self.records[index], gen)


def defaults_with(cls, params: Mapping) -> dict:
    return {**{p.name: p.default for p in cls.declared_params() if not p.required}, **params}


def data_root(config: Mapping) -> Path:
    """The ``root`` of a data source's config as a path (``~`` expanded)."""
    return Path(str(config.get("root"))).expanduser()


def root_error(what: str, path, tree: str, hint: str) -> UserError:
    """``domain.data.root: <what> <path>; <the expected tree>; <where to get the data>``."""
    return UserError(f"{ROOT_KEY}: {what} {path}; {tree}; {hint}")


def check_root(config: Mapping, tree: str, hint: str) -> Path:
    """The data root, which must be set and be a folder (else one line naming the tree and hint)."""
    given = config.get("root")
    if not isinstance(given, str) or not given:
        raise UserError(f"{ROOT_KEY}: not set; {tree}; {hint}")
    root = data_root(config)
    if not root.is_dir():
        raise root_error("no folder", root, tree, hint)
    return root


def finish_sample(image: Tensor, targets: dict[str, Tensor], kinds: Mapping[str, str],
                  size: tuple[int, int], generator: torch.Generator | None, *, flip: bool,
                  scale_range: tuple[float, float] | None) -> tuple[Tensor, dict[str, Tensor]]:
    """Resize one sample to ``size`` (image bilinear, targets nearest) and, with a generator,
    augment it. Draws, in this order: the flip (probability ½, when ``flip``), then — when
    ``scale_range`` — the scale ``s`` (uniform in the range), the top and the left offset.
    With a scale, everything is resized to round(s·size) and cropped (s ≥ 1) or padded (s < 1:
    image 0, labels −1, normals 0) back to ``size`` at the drawn offsets. A flip mirrors every
    map and negates the normals' x component. Kinds: ``label`` (int64 (H, W)), ``normals``
    (float (3, H, W)), ``depth`` / ``dense`` (float (1, H, W), padded with 0)."""
    flipped = False
    scaled = size
    offsets = (0, 0)
    if generator is not None:
        if flip:
            flipped = bool(torch.rand(1, generator=generator).item() < 0.5)
        if scale_range is not None:
            low, high = scale_range
            s = low + (high - low) * float(torch.rand(1, generator=generator).item())
            scaled = (max(1, int(round(size[0] * s))), max(1, int(round(size[1] * s))))
            offsets = tuple(int(torch.randint(abs(a - b) + 1, (1,), generator=generator).item())
                            for a, b in zip(scaled, size))
    out_image = resize_bilinear(image, scaled)
    out = {task: resize_nearest(t, scaled) for task, t in targets.items()}
    if scaled != size:
        out_image = place(out_image, size, offsets, 0.0)
        out = {task: place(t, size, offsets, -1 if kinds[task] == "label" else 0.0)
               for task, t in out.items()}
    if flipped:
        out_image, out = mirror(out_image, out, kinds)
    return out_image.contiguous(), {task: t.contiguous() for task, t in out.items()}
