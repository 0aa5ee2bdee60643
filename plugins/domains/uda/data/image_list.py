"""An ImageList dataset: images named in a text file, with the tllib / GH-paper transforms.

Format (tllib's ``ImageList``, used by Office-31, Office-Home, VisDA-2017 and DomainNet): one
image per line, ``relative/path.jpg label``; the label is the *last* whitespace-separated token
and everything before it is the path (so paths with spaces work); relative paths are relative
to ``root``, absolute ones are kept; blank lines are skipped. Images are read with torchvision's
``default_loader`` (PIL, converted to RGB).

Preprocessing (the GH paper's code ``cdan/pre_process.py`` and tllib's
``examples/domain_adaptation/image_classification/utils.py``, default ``resizing``):

* training: resize to ``resize x resize`` (a square warp, like both codes; bilinear,
  antialiased), a random resized crop to ``crop x crop`` (area scale 0.08-1, aspect ratio
  3/4-4/3, the Inception crop), a random horizontal flip (p = 0.5), ``ToTensor`` and ImageNet
  normalisation (mean 0.485, 0.456, 0.406; std 0.229, 0.224, 0.225);
* test: resize to ``resize x resize``, centre crop ``crop x crop``, ``ToTensor``, ImageNet
  normalisation (no randomness).

Defaults ``resize = 256``, ``crop = 224``; tests use small sizes.

Randomness: every draw of sample ``index`` in epoch ``epoch`` comes from its own
``torch.Generator`` seeded with :func:`sample_seed` ``(seed, epoch, index, stream)`` (splitmix64
mixing in plain 64-bit integer arithmetic), never from the global RNG, so an image's
augmentation is a pure function of those integers, whatever the worker or the order.
"""
from __future__ import annotations

import math
import os
from typing import Sequence

import torch
from torch.utils.data import Dataset
from torchvision.datasets.folder import default_loader
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF

from mtl_platform.batches import mix_seed
from mtl_platform.errors import UserError

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "ImageListDataset", "read_image_list", "sample_seed",
           "random_resized_crop_box"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CROP_SCALE = (0.08, 1.0)
CROP_RATIO = (3.0 / 4.0, 4.0 / 3.0)

def sample_seed(seed: int, epoch: int, index: int, stream: int = 0) -> int:
    """The generator seed of sample ``index`` in ``epoch`` of dataset ``stream``:
    :func:`mtl_platform.batches.mix_seed` over (seed, stream, epoch, index)."""
    return mix_seed(seed, stream, epoch, index)


def random_resized_crop_box(height: int, width: int, generator: torch.Generator,
                            scale: Sequence[float] = CROP_SCALE,
                            ratio: Sequence[float] = CROP_RATIO) -> tuple[int, int, int, int]:
    """``(top, left, h, w)`` of an Inception-style crop: area fraction uniform in ``scale``,
    log aspect ratio uniform in ``log(ratio)``; up to 10 tries, else the largest centred box
    whose aspect ratio lies in ``ratio``. All draws come from ``generator``."""
    area = height * width
    lo, hi = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(10):
        u = torch.rand(2, generator=generator, dtype=torch.float64).tolist()
        target = area * (scale[0] + (scale[1] - scale[0]) * u[0])
        aspect = math.exp(lo + (hi - lo) * u[1])
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(torch.randint(0, height - h + 1, (1,), generator=generator))
            left = int(torch.randint(0, width - w + 1, (1,), generator=generator))
            return top, left, h, w
    in_ratio = width / height
    if in_ratio < ratio[0]:
        w, h = width, int(round(width / ratio[0]))
    elif in_ratio > ratio[1]:
        h, w = height, int(round(height * ratio[1]))
    else:
        h, w = height, width
    return (height - h) // 2, (width - w) // 2, h, w


def read_image_list(list_file: str, root: str, num_classes: int | None = None,
                    where: str = "domain.data.root", hint: str = "") -> list[tuple[str, int]]:
    """``[(image path, label)]`` from an ImageList file (see the module docstring).

    A missing file is a ``UserError`` naming ``where``, the path and ``hint`` (the expected
    layout and where to download it); a malformed line or a label outside
    ``[0, num_classes)`` is a ``UserError`` naming the file and line.
    """
    tail = f"; {hint}" if hint else ""
    if not os.path.isfile(list_file):
        raise UserError(f"{where}: image list {list_file} not found{tail}")
    samples = []
    with open(list_file, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            try:
                label = int(parts[-1])
            except ValueError:
                label = None
            if len(parts) < 2 or label is None:
                raise UserError(f"{where}: {list_file}:{number}: expected 'relative/path.jpg label', "
                                f"got {line.strip()!r}")
            if num_classes is not None and not 0 <= label < num_classes:
                raise UserError(f"{where}: {list_file}:{number}: label {label} outside 0..{num_classes - 1}")
            path = " ".join(parts[:-1])
            samples.append((path if os.path.isabs(path) else os.path.join(root, path), label))
    if not samples:
        raise UserError(f"{where}: image list {list_file} is empty{tail}")
    return samples


class ImageListDataset(Dataset):
    """``(image float32 (3, crop, crop), label int64 ())`` samples of an ImageList file.

    ``train`` picks the augmenting training transform or the deterministic test transform
    (module docstring). ``seed`` and ``stream`` (which dataset, e.g. a hash of the domain name)
    fix the augmentation together with ``set_epoch(epoch)`` and the index. ``where``/``hint``
    go into the ``UserError`` for a missing list or image. The first listed image is checked at
    construction; the others when read.
    """

    def __init__(self, root: str, list_file: str, train: bool, crop: int = 224, resize: int = 256,
                 seed: int = 0, stream: int = 0, num_classes: int | None = None,
                 where: str = "domain.data.root", hint: str = ""):
        if crop > resize:
            raise UserError(f"domain.data.image_size: {crop} is larger than domain.data.resize ({resize}); "
                            "the crop is taken from the resized image")
        self.root = str(root)
        self.list_file = str(list_file)
        self.train = bool(train)
        self.crop = int(crop)
        self.resize = int(resize)
        self.seed = int(seed)
        self.stream = int(stream)
        self.epoch = 0
        self.where = where
        self.hint = hint
        self.samples = read_image_list(self.list_file, self.root, num_classes, where, hint)
        self.targets = [label for _, label in self.samples]
        first = self.samples[0][0]
        if not os.path.isfile(first):
            raise self._missing(first)

    def _missing(self, path: str) -> UserError:
        tail = f"; {self.hint}" if self.hint else ""
        return UserError(f"{self.where}: image {path} (listed in {self.list_file}) not found{tail}")

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation draws of ``epoch`` (training transform only)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.samples)

    def generator(self, index: int) -> torch.Generator:
        """The generator of sample ``index`` in the current epoch."""
        return torch.Generator().manual_seed(sample_seed(self.seed, self.epoch, index, self.stream))

    def transform(self, image, index: int) -> torch.Tensor:
        """Apply the training or test transform to a PIL image (``index`` seeds the draws)."""
        image = TF.resize(image, [self.resize, self.resize], InterpolationMode.BILINEAR, antialias=True)
        if self.train:
            g = self.generator(index)
            width, height = image.size
            top, left, h, w = random_resized_crop_box(height, width, g)
            image = TF.resized_crop(image, top, left, h, w, [self.crop, self.crop],
                                    InterpolationMode.BILINEAR, antialias=True)
            if float(torch.rand(1, generator=g)) < 0.5:
                image = TF.hflip(image)
        else:
            image = TF.center_crop(image, [self.crop, self.crop])
        return TF.normalize(TF.to_tensor(image), IMAGENET_MEAN, IMAGENET_STD)

    def __getitem__(self, index: int):
        path, label = self.samples[index]
        try:
            image = default_loader(path)
        except FileNotFoundError:
            raise self._missing(path) from None
        except OSError as exc:
            raise UserError(f"{self.where}: cannot read image {path} (listed in {self.list_file}): {exc}") from None
        return self.transform(image, index), torch.tensor(label, dtype=torch.int64)
