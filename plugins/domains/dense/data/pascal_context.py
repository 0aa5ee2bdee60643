"""PASCAL-Context multi-task (Maninis et al., "Attentive Single-Tasking of Multiple Tasks",
CVPR 2019 — ASTMT): semantic segmentation, human parts, saliency and surface normals.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from mtl_platform.errors import UserError
from mtl_platform.params import SEED_BOUNDS, Param

from ..contract import DenseData
from ._common import (ROOT_KEY, DenseSplit, check_fraction, check_image_size, check_root, data_root,
                      defaults_with, finish_sample, image_size_param, image_tensor, listing, read_image, read_rgb,
                      resize_nearest, root_error, unit_or_zero)
from .splits import carve

PASCAL_URL = "https://data.vision.ee.ethz.ch/kmaninis/share/MTL/PASCAL_MT.tgz"

PASCAL_TREE = ("expected PASCAL_MT/ holding JPEGImages/<id>.jpg, ImageSets/Context/{train,val}.txt, "
               "semseg/VOC12/<id>.png or semseg/pascal-context/<id>.png, human_parts/<id>.mat, "
               "sal_distill/<id>.png, normals_distill/<id>.png and pascal-context/trainval/<id>.mat")
PASCAL_HINT = (f"get it from {PASCAL_URL} (ASTMT, github.com/facebookresearch/astmt; also downloaded by "
               "Vandenhende et al.'s Multi-Task-Learning-PyTorch) and extract it")

#: PASCAL-Part's class index of "person" (the VOC order)
PERSON = 15

#: PASCAL-Part person part → our 7-class human-parts label (0 = background); ASTMT's 6-part
#: grouping (its default ``num_human_parts=6``)
HUMAN_PART_GROUPS = {
    1: ("hair", "head", "lear", "lebrow", "leye", "mouth", "nose", "rear", "rebrow", "reye"),
    2: ("neck", "torso"),
    3: ("luarm", "ruarm"),
    4: ("lhand", "llarm", "rhand", "rlarm"),
    5: ("luleg", "ruleg"),
    6: ("lfoot", "llleg", "rfoot", "rlleg"),
}
HUMAN_PART_LABEL = {part: label for label, parts in HUMAN_PART_GROUPS.items() for part in parts}

#: PASCAL-Context class ids (of the 459-class ``LabelMap``) whose distilled normals ASTMT keeps:
#: the classes whose name is also an NYUv2 class (except "unknown"), plus "tvmonitor" — derived
#: from ASTMT's ``util/db_info/{nyu,context}_classes.json``. Pixels of any other class have no
#: valid normal.
NORMAL_VALID_CLASSES = frozenset((
    3, 4, 6, 9, 10, 11, 13, 15, 17, 18, 22, 23, 29, 30, 33, 34, 36, 37, 38, 39, 41, 43, 46, 49,
    50, 51, 53, 55, 56, 59, 61, 62, 65, 66, 68, 69, 72, 73, 78, 83, 84, 85, 87, 88, 95, 96, 101,
    104, 105, 107, 111, 113, 115, 122, 124, 135, 141, 142, 143, 146, 150, 154, 157, 158, 159, 165,
    172, 174, 181, 183, 184, 191, 193, 195, 197, 199, 202, 213, 215, 216, 219, 220, 223, 225, 228,
    230, 232, 233, 238, 239, 242, 243, 246, 250, 251, 252, 255, 260, 261, 263, 269, 272, 273, 275,
    281, 283, 284, 285, 286, 287, 288, 290, 291, 292, 293, 295, 304, 307, 309, 310, 314, 315, 319,
    323, 329, 330, 331, 336, 342, 345, 349, 350, 351, 352, 355, 357, 368, 370, 371, 374, 379, 380,
    383, 384, 397, 401, 403, 405, 407, 408, 411, 412, 413, 414, 417, 419, 421, 423, 427, 429, 430,
    432, 440, 441, 442, 443, 444, 446, 454, 457,
))
_NORMAL_VALID_SORTED = np.array(sorted(NORMAL_VALID_CLASSES))

SEMSEG_CLASSES = 21
HUMAN_PARTS_CLASSES = 7

#: task → how it is resampled and padded (label maps nearest, padded with −1; normals nearest,
#: padded with 0 and x negated on a flip)
PASCAL_KINDS = {"semseg": "label", "human_parts": "label", "saliency": "label", "normals": "normals"}


def load_mat(path: Path) -> dict:
    import scipy.io

    try:
        return scipy.io.loadmat(str(path))
    except (OSError, ValueError, TypeError) as exc:
        raise UserError(f"{ROOT_KEY}: cannot read {path} ({exc}); {PASCAL_HINT}") from None


def semseg_labels(raw: np.ndarray) -> Tensor:
    """Class ids 0..20 kept; 255 (VOC's border/void) and anything else → −1."""
    if raw.ndim == 3:
        raw = raw[..., 0]
    raw = raw.astype(np.int64)
    return torch.from_numpy(np.where((raw >= 0) & (raw < SEMSEG_CLASSES), raw, -1))


def human_parts_labels(mat: Mapping, shape: tuple[int, int]) -> Tensor:
    """The 7-class map from a PASCAL-Part annotation (``anno`` → objects → parts), as ASTMT:
    for each object of class person (15) that has parts, its part masks are painted with
    :data:`HUMAN_PART_LABEL` over a background of 0. An image with no such object — or whose
    painted map is still all background — has no human-parts annotation: every pixel is −1
    (ASTMT's ``AddIgnoreRegions`` turns such all-zero maps into its ignore value 255)."""
    target = None
    objects = mat["anno"][0][0][1]
    objects = objects[0] if objects.size else []
    for obj in objects:
        class_ind = int(np.asarray(obj[1]).reshape(-1)[0])
        parts = obj[3]
        if class_ind != PERSON or parts.size == 0:
            continue
        if target is None:
            target = np.zeros(np.asarray(obj[2]).shape, dtype=np.int64)
        for part in parts[0]:
            name = str(np.asarray(part[0]).reshape(-1)[0])
            label = HUMAN_PART_LABEL.get(name)
            if label is not None:
                target[np.asarray(part[1]).astype(bool)] = label
    if target is None or not target.any():
        return torch.full(shape, -1, dtype=torch.int64)
    return torch.from_numpy(target)


def saliency_labels(raw: np.ndarray) -> Tensor:
    """ASTMT's threshold of the distilled saliency map: salient iff value / 255 > 0.5."""
    if raw.ndim == 3:
        raw = raw[..., 0]
    return torch.from_numpy((raw.astype(np.float32) / 255.0 > 0.5).astype(np.int64))


def pascal_normals(rgb: np.ndarray, label_map: np.ndarray) -> Tensor:
    """Distilled normals: 2·v/255 − 1 per channel, zero on pixels whose PASCAL-Context class is
    not in :data:`NORMAL_VALID_CLASSES` (ASTMT), then normalised to unit length (float32 (3, H, W))."""
    n = torch.from_numpy(rgb[..., :3].astype(np.float32) * (2.0 / 255.0) - 1.0).permute(2, 0, 1)
    labels = torch.from_numpy(label_map.astype(np.int64))
    labels = resize_nearest(labels, tuple(n.shape[-2:]))
    valid = torch.from_numpy(np.isin(labels.numpy(), _NORMAL_VALID_SORTED))
    n = torch.where(valid.unsqueeze(0), n, torch.zeros_like(n))
    return unit_or_zero(n).contiguous()


class _PascalReader:
    """Reads one PASCAL_MT image id into the dense contract's sample."""

    def __init__(self, root: Path, semseg_dirs: dict[str, Path], size: tuple[int, int]):
        self.root = root
        self.semseg_dirs = semseg_dirs
        self.size = size

    def __call__(self, image_id: str, generator: torch.Generator | None):
        root = self.root
        rgb = read_rgb(root / "JPEGImages" / f"{image_id}.jpg")
        shape = rgb.shape[:2]
        targets = {
            "semseg": semseg_labels(read_image(self.semseg_dirs[image_id] / f"{image_id}.png")),
            "human_parts": human_parts_labels(load_mat(root / "human_parts" / f"{image_id}.mat"), shape),
            "saliency": saliency_labels(read_image(root / "sal_distill" / f"{image_id}.png")),
            "normals": pascal_normals(read_image(root / "normals_distill" / f"{image_id}.png"),
                                      load_mat(root / "pascal-context" / "trainval" / f"{image_id}.mat")["LabelMap"]),
        }
        return finish_sample(image_tensor(rgb), targets, PASCAL_KINDS, self.size, generator,
                             flip=True, scale_range=(0.75, 1.25))


class PascalContext(DenseData):
    """PASCAL-Context as prepared by ASTMT: ``semseg`` (21 classes), ``human_parts`` (7),
    ``saliency`` (2) and ``normals``.

    **Data.** ``PASCAL_MT.tgz`` of Maninis, Radosavovic & Kokkinos (ASTMT, CVPR 2019,
    github.com/facebookresearch/astmt, ``fblib/dataloaders/pascal_context.py``), also used by
    MTI-Net and Vandenhende et al.'s Multi-Task-Learning-PyTorch (``data/pascal_context.py``),
    from https://data.vision.ee.ethz.ch/kmaninis/share/MTL/PASCAL_MT.tgz. ``root`` is the
    extracted ``PASCAL_MT`` folder::

        PASCAL_MT/
          JPEGImages/<id>.jpg                 RGB images
          ImageSets/Context/train.txt         4,998 ids, one per line
          ImageSets/Context/val.txt           5,105 ids
          semseg/VOC12/<id>.png               21-class maps (read first when present) ...
          semseg/pascal-context/<id>.png      ... else this one; 0..20, 255 = void
          human_parts/<id>.mat                PASCAL-Part annotation (``anno``)
          sal_distill/<id>.png                distilled saliency, 0..255
          normals_distill/<id>.png            distilled normals, RGB
          pascal-context/trainval/<id>.mat    PASCAL-Context ``LabelMap`` (459 classes)

    **Encodings** (as ASTMT decodes them). ``semseg``: palette indices 0..20; 255 and anything
    else → −1. ``human_parts``: from the ``.mat`` (``anno`` → objects (class, class_ind, mask,
    parts) → parts (part_name, mask)), the parts of every person (class_ind 15) grouped into 6
    part classes over background 0 (ASTMT's default grouping); an image with no annotated person
    is wholly ignored (−1), as ASTMT's ``AddIgnoreRegions`` does. ``saliency``: 1 where
    value / 255 > 0.5, else 0 (no ignore value: 255 is "fully salient"). ``normals``: RGB →
    2·v/255 − 1, zeroed (= invalid) on pixels whose ``LabelMap`` class is not one ASTMT keeps
    (:data:`NORMAL_VALID_CLASSES`: the NYUv2 classes, plus tvmonitor), then normalised to unit
    length. The image is scaled to [0, 1] and normalised with the ImageNet mean/std (as
    Multi-Task-Learning-PyTorch does).

    **Size.** Every sample is resized to ``image_size`` (default 512×512; image bilinear, maps
    nearest) so batches stack. *Deviation:* ASTMT and Multi-Task-Learning-PyTorch also bring
    every training and test sample to 512×512 (``FixedResize``), but with bicubic
    interpolation for the image and for the normals (then re-normalised) and predictions are
    scored at that size; here normals are resampled nearest so they stay unit or zero.
    (ASTMT does not pad or crop: ``FixedResize`` changes the aspect ratio, as here.)

    **Splits.** ``test`` is the official ``val.txt`` (5,105 images, the benchmark's test set);
    ``train`` and ``val`` split the official ``train.txt`` (4,998), ``val_fraction`` of it
    (default 0.1) held out for validation by a ``data_seed`` permutation — so model selection
    never sees a test image. (ASTMT trains on all of ``train.txt`` and reports on ``val.txt``.)

    **Augmentation** (``augment``, training split only): a horizontal flip with probability ½
    (the normals' x component negated, as ASTMT's ``RandomHorizontalFlip``) and a random scale
    in [0.75, 1.25] followed by a crop (or a pad: image 0, labels −1, normals 0) back to
    ``image_size`` — ASTMT's scale range; its ±20° rotation is left out. Draws come from a
    ``torch.Generator`` seeded from (run seed, epoch, index) by :func:`sample_seed`; the domain
    sets the epoch with ``dataset.set_epoch(epoch)``. ``val`` and ``test`` are never augmented.
    """

    name = "pascal_context"
    image_size = (512, 512)
    params = (
        Param("root", str, help="the extracted PASCAL_MT folder of ASTMT (PASCAL_MT.tgz)"),
        image_size_param((512, 512), "[height, width] every sample is resized to (image bilinear, "
                         "labels nearest); ASTMT resizes to 512x512 too"),
        Param("val_fraction", float, 0.1, "share of the official train list held out as our validation "
              "split (the official val list is the benchmark's test split)", bounds="[0, 1)"),
        Param("data_seed", int, 0, "seed of the train/validation carve", bounds=SEED_BOUNDS),
        Param("augment", bool, True, "random horizontal flip and scale in [0.75, 1.25] with crop/pad "
              "of training samples"),
    )

    def __init__(self, seed: int = 0, **params):
        super().__init__(seed, **defaults_with(type(self), params))
        self.image_size = check_image_size(self.config["image_size"])

    def build_tasks(self):
        from ..tasks.normals import NormalTask
        from ..tasks.saliency import SaliencyTask
        from ..tasks.segmentation import SegmentationTask

        return [SegmentationTask("semseg", SEMSEG_CLASSES, ignore_index=-1),
                SegmentationTask("human_parts", HUMAN_PARTS_CLASSES, ignore_index=-1),
                SaliencyTask("saliency", ignore_index=-1),
                NormalTask("normals", spread="rmse")]

    # -- files ----------------------------------------------------------------------------
    @property
    def root(self) -> Path:
        return data_root(self.config)

    def _error(self, what: str, path) -> UserError:
        return root_error(what, path, PASCAL_TREE, PASCAL_HINT)

    def _ids(self, which: str) -> list[str]:
        path = self.root / "ImageSets" / "Context" / f"{which}.txt"
        if not path.is_file():
            raise self._error("no split list", path)
        ids = [line.strip() for line in path.read_text().splitlines() if line.strip()]
        if not ids:
            raise self._error("empty split list", path)
        return ids

    def _check_files(self, ids: Sequence[str]) -> dict[str, Path]:
        """Every file the ids need exists; returns id → its semseg folder."""
        root = self.root
        folders = {
            "JPEGImages": ".jpg", "human_parts": ".mat", "sal_distill": ".png",
            "normals_distill": ".png", "pascal-context/trainval": ".mat",
        }
        for sub, ext in folders.items():
            folder = root / sub
            if not folder.is_dir():
                raise self._error("no folder", folder)
            names = listing(folder)
            lost = [i for i in ids if f"{i}{ext}" not in names]
            if lost:
                raise self._error(f"{len(lost)} of {len(ids)} files missing, first", folder / f"{lost[0]}{ext}")
        voc, context = root / "semseg" / "VOC12", root / "semseg" / "pascal-context"
        if not voc.is_dir() and not context.is_dir():
            raise self._error("no folder", context)
        voc_names, context_names = listing(voc), listing(context)
        dirs: dict[str, Path] = {}
        lost = []
        for i in ids:
            name = f"{i}.png"
            if name in voc_names:
                dirs[i] = voc
            elif name in context_names:
                dirs[i] = context
            else:
                lost.append(i)
        if lost:
            raise self._error(f"{len(lost)} of {len(ids)} segmentation maps missing, first",
                              context / f"{lost[0]}.png")
        return dirs

    def split_ids(self, split: str) -> list[str]:
        """The image ids of ``split`` (train/val carved from the official train list)."""
        if split == "test":
            return self._ids("val")
        ids = self._ids("train")
        keep, held = carve(len(ids), check_fraction(self.config["val_fraction"], "domain.data.val_fraction"),
                           int(self.config["data_seed"]))
        return [ids[i] for i in (keep if split == "train" else held)]

    def load_split(self, split: str) -> DenseSplit:
        if split not in ("train", "val", "test"):
            raise ValueError(f"unknown split {split!r}; splits: train, val, test")
        check_root(self.config, PASCAL_TREE, PASCAL_HINT)
        ids = self.split_ids(split)
        dirs = self._check_files(ids)
        reader = _PascalReader(self.root, dirs, self.image_size)
        return DenseSplit(ids, reader, augment=split == "train" and bool(self.config["augment"]),
                          seed=self.seed, names=ids)
