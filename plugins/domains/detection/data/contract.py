"""The data seam of the detection domain (sub-kind ``detection.data``): a family of images with
boxes, its class list and its benchmark splits."""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor
from torch.utils.data import Dataset

from mtl_platform.contracts import Configurable


class DetectionData(Configurable):
    """One detection dataset family (``digits``, ``voc``, ``coco``, or a third party's).

    ``classes()``: the class names, in label order: label ``k`` (1-based; 0 is torchvision's
    background) is ``classes()[k − 1]``. ``load(split)`` (``train``, ``val``, ``test``): a
    :class:`DetectionList`. A missing file or folder is a ``UserError`` naming the path, the
    expected layout and where to get the data."""

    def __init__(self, seed: int = 0, **params):
        self.seed = int(seed)
        self.check_ranges(params, "domain.data")
        self.config = params

    def classes(self) -> list[str]:
        raise NotImplementedError

    def load(self, split: str) -> Dataset:
        raise NotImplementedError


class DetectionList(Dataset):
    """``n`` samples ``(image float32 (3, H, W) in [0, 1], target)`` made by ``read(i)``; the target
    holds ``boxes`` float32 (k, 4) x1 y1 x2 y2 in pixels, ``labels`` int64 (k,) and ``iscrowd``
    int64 (k,) (regions evaluation ignores). Batches are lists (images differ in size and box
    count): ``get_batch(idx) -> (images, targets)``; with ``train`` the targets are
    :func:`training_target` (no crowd regions), on the host, before the batch moves to a device."""

    def __init__(self, n: int, read: Callable[[int], tuple[Tensor, dict]], train: bool = False):
        self.n, self.read, self.train = int(n), read, train

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        return self.read(int(i))

    def get_batch(self, idx: Tensor):
        samples = [self.read(int(i)) for i in idx]
        targets = [training_target(s[1]) if self.train else s[1] for s in samples]
        return [s[0] for s in samples], targets


def target(boxes, labels, iscrowd=None) -> dict:
    boxes = torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    labels = torch.as_tensor(labels, dtype=torch.int64).reshape(-1)
    crowd = torch.zeros_like(labels) if iscrowd is None else torch.as_tensor(iscrowd, dtype=torch.int64).reshape(-1)
    return {"boxes": boxes, "labels": labels, "iscrowd": crowd}


def training_target(t: dict) -> dict:
    """What the detector is trained on: the boxes that are not crowd regions (torchvision's COCO
    reference drops them as well)."""
    keep = t["iscrowd"] == 0
    return {"boxes": t["boxes"][keep], "labels": t["labels"][keep]}
