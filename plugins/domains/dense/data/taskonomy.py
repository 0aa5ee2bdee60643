"""Taskonomy (Zamir et al., CVPR 2018) with the five tasks of Standley et al. (ICML 2020):
semantic segmentation, z-buffer depth, 2D keypoints, 2D (texture) edges and surface normals."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from mtl_platform.errors import UserError
from mtl_platform.params import SEED_BOUNDS, Param

from ..contract import DenseData
from ._common import (DenseSplit, check_fraction, check_image_size, check_root, data_root, defaults_with,
                      finish_sample, image_size_param, image_tensor, listing, read_image, read_rgb, resize_nearest,
                      root_error, unit_or_zero)
from .splits import carve

TINY_BUILDINGS = ("allensville", "collierville", "mifflinburg", "noxapater", "onaga")
TASKS = ("segment_semantic", "depth_zbuffer", "keypoints2d", "edge_texture", "normal")

#: Taskonomy's segment_semantic: 0 = "uncertain" (ignored), 1 = background, 2..17 = 16 COCO
#: classes; stored − 1, so 17 classes 0..16
SEG_CLASSES = 17
#: depth_zbuffer is in 1/512 m (max 128 m); 65,535 marks "no depth". Values from this one on
#: are invalid (AdaShare's ``make_depth_mask`` threshold, a margin below the sentinel)
DEPTH_INVALID_FROM = 64500
DEPTH_UNITS_PER_METRE = 512.0
#: keypoints2d / edge_texture standardisation of Standley et al.'s ``taskonomy_loader.py``
STANDLEY_SHIFT_SCALE = {"keypoints2d": (50.0, 100.0), "edge_texture": (718.0, 1070.0)}
SCALINGS = ("standley", "unit")

TASKONOMY_TREE = ("expected <root>/<domain>/<building>/point_<i>_view_<j>_domain_<domain>.png for "
                  "domain in rgb, segment_semantic, depth_zbuffer, keypoints2d, edge_texture, normal "
                  "(optional mask/; <root>/<domain>/taskonomy/<building>/ as omnitools lays it out also works)")
TASKONOMY_HINT = ("get the tiny split with the Omnidata download tool (pip install omnidata-tools; "
                  "omnitools.download <domains> --components taskonomy --subset tiny --dest <root>), "
                  "see github.com/StanfordVL/taskonomy/tree/master/data")

KINDS = {"segment_semantic": "label", "depth_zbuffer": "depth", "keypoints2d": "dense",
         "edge_texture": "dense", "normal": "normals"}

_RGB_NAME = re.compile(r"^(point_\d+_view_\d+)_domain_rgb\.png$")


def _natural(stem: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", stem))


def _plane(raw: np.ndarray) -> np.ndarray:
    return raw[..., 0] if raw.ndim == 3 else raw


def segment_labels(raw: np.ndarray) -> Tensor:
    """0 (uncertain) → −1; 1..17 → 0..16; anything else → −1."""
    raw = _plane(raw).astype(np.int64)
    return torch.from_numpy(np.where((raw >= 1) & (raw <= SEG_CLASSES), raw - 1, -1))


def depth_valid(raw: np.ndarray) -> np.ndarray:
    return _plane(raw).astype(np.int64) < DEPTH_INVALID_FROM


def depth_metres(raw: np.ndarray) -> Tensor:
    """uint16 z-buffer (1/512 m) → float32 (1, H, W) metres, 0 where invalid."""
    raw = _plane(raw)
    metres = raw.astype(np.float32) / DEPTH_UNITS_PER_METRE
    return torch.from_numpy(np.where(depth_valid(raw), metres, 0.0).astype(np.float32)).unsqueeze(0)


def scaled_map(raw: np.ndarray, task: str, scaling: str) -> Tensor:
    """uint16 keypoints2d / edge_texture → float32 (1, H, W): ``standley`` (v − shift) / scale,
    ``unit`` v / 65535."""
    v = _plane(raw).astype(np.float32)
    if scaling == "unit":
        v = v / 65535.0
    else:
        shift, scale = STANDLEY_SHIFT_SCALE[task]
        v = (v - shift) / scale
    return torch.from_numpy(v).unsqueeze(0)


def taskonomy_normals(rgb: np.ndarray, valid: np.ndarray) -> Tensor:
    """RGB (127-centred) → 2·v/255 − 1, zero where not ``valid``, normalised to unit length."""
    n = torch.from_numpy(rgb[..., :3].astype(np.float32) * (2.0 / 255.0) - 1.0).permute(2, 0, 1)
    valid_t = torch.from_numpy(np.asarray(valid, dtype=bool))
    if tuple(valid_t.shape) != tuple(n.shape[-2:]):
        valid_t = resize_nearest(valid_t, tuple(n.shape[-2:]))
    n = torch.where(valid_t.unsqueeze(0), n, torch.zeros_like(n))
    return unit_or_zero(n).contiguous()


class _TaskonomyReader:
    """Reads one (building, view) of Taskonomy into the dense contract's sample."""

    def __init__(self, dirs: dict[tuple[str, str], Path], size: tuple[int, int], scaling: str):
        self.dirs = dirs  # (domain, building) → folder
        self.size = size
        self.scaling = scaling

    def path(self, domain: str, building: str, stem: str) -> Path:
        return self.dirs[(domain, building)] / f"{stem}_domain_{domain}.png"

    def __call__(self, record: tuple[str, str], generator: torch.Generator | None):
        building, stem = record
        rgb = read_rgb(self.path("rgb", building, stem))
        depth_raw = read_image(self.path("depth_zbuffer", building, stem))
        if ("mask", building) in self.dirs:
            valid = _plane(read_image(self.path("mask", building, stem))) > 0
        else:
            valid = depth_valid(depth_raw)
        targets = {
            "segment_semantic": segment_labels(read_image(self.path("segment_semantic", building, stem))),
            "depth_zbuffer": depth_metres(depth_raw),
            "keypoints2d": scaled_map(read_image(self.path("keypoints2d", building, stem)), "keypoints2d",
                                      self.scaling),
            "edge_texture": scaled_map(read_image(self.path("edge_texture", building, stem)), "edge_texture",
                                       self.scaling),
            "normal": taskonomy_normals(read_image(self.path("normal", building, stem)), valid),
        }
        return finish_sample(image_tensor(rgb), targets, KINDS, self.size, generator, flip=True,
                             scale_range=None)


class Taskonomy(DenseData):
    """Taskonomy, Standley et al.'s five tasks on the "tiny" buildings: ``segment_semantic``
    (17 classes), ``depth_zbuffer``, ``keypoints2d``, ``edge_texture`` and ``normal``.

    **Data.** Taskonomy (Zamir et al., CVPR 2018; github.com/StanfordVL/taskonomy, ``data/``;
    downloaded with the Omnidata ``omnitools.download`` tool), laid out as Standley et al.'s
    ``taskonomy_loader.py`` (github.com/tstandley/taskgrouping) reads it — one folder per domain
    and building, the label of an RGB file being its path with ``rgb`` replaced by the task::

        <root>/rgb/<building>/point_<i>_view_<j>_domain_rgb.png               512x512 RGB
        <root>/segment_semantic/<building>/point_<i>_view_<j>_domain_segment_semantic.png
        <root>/depth_zbuffer/<building>/..._domain_depth_zbuffer.png          uint16
        <root>/keypoints2d/<building>/..._domain_keypoints2d.png              uint16
        <root>/edge_texture/<building>/..._domain_edge_texture.png            uint16
        <root>/normal/<building>/..._domain_normal.png                        RGB
        <root>/mask/<building>/..._domain_mask.png                            optional (used when
                                                                              complete for a building)

    (``<root>/<domain>/taskonomy/<building>/``, the Omnidata layout, is accepted too.)
    ``buildings`` defaults to the thesis's five tiny buildings (allensville, collierville,
    mifflinburg, noxapater, onaga).

    **Encodings.** ``segment_semantic``: 0 = "uncertain" → −1 (ignored, Standley's
    ``ignore_index=0``), 1 = background and 2..17 = 16 COCO classes → 0..16 (17 classes, as
    AdaShare's ``img − 1``). ``depth_zbuffer``: 1/512 m units (Taskonomy README) → metres;
    65,535 is "no depth" — values ≥ 64,500 (AdaShare's mask threshold) become 0 = invalid.
    ``keypoints2d`` / ``edge_texture`` (uint16), ``keypoint_edge_scaling``: ``standley``
    (default) standardises them as Standley's loader does, (v − 50)/100 and (v − 718)/1070;
    ``unit`` gives v/65535. No pixel is ignored (Standley's L1 losses use every pixel).
    ``normal``: RGB, 127-centred → 2·v/255 − 1 (Standley), zero (invalid) where the ``mask``
    PNG is 0 when a mask folder exists (Standley), else where the depth is invalid (AdaShare's
    normal mask), then normalised to unit length. The image is scaled to [0, 1] and normalised
    with the ImageNet mean/std. Every sample is resized to ``image_size`` (default 256×256, the
    default of Standley's ``--image-size``): image bilinear, maps nearest.

    **Splits.** Standley et al. split by building (their ``train_models.txt`` /
    ``val_models.txt``), but none of those lists is these five buildings; the thesis reports
    13,286 train / 3,794 val images over the five (its val is the evaluation split). So by
    default ``test`` is a ``data_seed`` random ``test_fraction`` (0.222 ≈ 3,794/17,080) of all
    images; or, with ``test_buildings``, every image of those buildings (a building-disjoint
    test split, like Standley's). ``val`` is ``val_fraction`` (0.1) of the remaining images,
    ``train`` the rest: val never holds a test image.

    **Augmentation** (``augment``, training split only): a horizontal flip with probability ½
    that negates the normals' x component (Standley's ``flip_lr``), drawn from a generator
    seeded from (run seed, epoch, index); ``val`` and ``test`` are never augmented.
    """

    name = "taskonomy"
    image_size = (256, 256)
    params = (
        Param("root", str, help="Taskonomy folder holding rgb/, segment_semantic/, depth_zbuffer/, "
              "keypoints2d/, edge_texture/, normal/ (each with one folder per building)"),
        Param("buildings", list, list(TINY_BUILDINGS), "buildings to read (default: the thesis's five "
              "tiny buildings)", item=str),
        image_size_param((256, 256), "[height, width] every sample is resized to (image bilinear, maps nearest)"),
        Param("test_buildings", list, [], "buildings (among `buildings`) forming the test split; empty: "
              "a random test_fraction of all images", item=str),
        Param("test_fraction", float, 0.222, "share of all images held out as the test split when "
              "test_buildings is empty (0.222: the thesis's 3,794 of 17,080)", bounds="[0, 1)"),
        Param("val_fraction", float, 0.1, "share of the non-test images held out as the validation split",
              bounds="[0, 1)"),
        Param("data_seed", int, 0, "seed of the test and validation carves", bounds=SEED_BOUNDS),
        Param("augment", bool, True, "random horizontal flip of training samples"),
        Param("keypoint_edge_scaling", str, "standley", "keypoints2d/edge_texture values: standley "
              "((v-50)/100, (v-718)/1070, as Standley et al.) or unit (v/65535)", choices=SCALINGS),
    )

    def __init__(self, seed: int = 0, **params):
        super().__init__(seed, **defaults_with(type(self), params))
        self.image_size = check_image_size(self.config["image_size"])

    def build_tasks(self):
        from ..tasks.depth import DepthTask
        from ..tasks.normals import NormalTask
        from ..tasks.pixel_l1 import PixelL1Task
        from ..tasks.segmentation import SegmentationTask

        return [SegmentationTask("segment_semantic", SEG_CLASSES, ignore_index=-1),
                DepthTask("depth_zbuffer"),
                PixelL1Task("keypoints2d", ignore_value=None),
                PixelL1Task("edge_texture", ignore_value=None),
                NormalTask("normal", spread="median")]

    # -- files ----------------------------------------------------------------------------
    @property
    def root(self) -> Path:
        return data_root(self.config)

    def _error(self, what: str, path) -> UserError:
        return root_error(what, path, TASKONOMY_TREE, TASKONOMY_HINT)

    def _domain_dir(self, domain: str) -> Path:
        base = self.root / domain
        nested = base / "taskonomy"
        return nested if nested.is_dir() else base

    def _scan(self) -> tuple[list[tuple[str, str]], dict[tuple[str, str], Path]]:
        """All (building, stem) records in building order, then point/view order; and the
        folder of every (domain, building)."""
        check_root(self.config, TASKONOMY_TREE, TASKONOMY_HINT)
        buildings = [str(b) for b in self.config["buildings"]]
        if not buildings:
            raise UserError("domain.data.buildings: empty; name at least one Taskonomy building")
        records: list[tuple[str, str]] = []
        dirs: dict[tuple[str, str], Path] = {}
        for building in buildings:
            rgb_dir = self._domain_dir("rgb") / building
            if not rgb_dir.is_dir():
                raise self._error("no folder", rgb_dir)
            stems = sorted((m.group(1) for m in map(_RGB_NAME.match, listing(rgb_dir)) if m), key=_natural)
            if not stems:
                raise self._error("no point_<i>_view_<j>_domain_rgb.png files in", rgb_dir)
            dirs[("rgb", building)] = rgb_dir
            for domain in TASKS:
                folder = self._domain_dir(domain) / building
                if not folder.is_dir():
                    raise self._error("no folder", folder)
                names = listing(folder)
                lost = [s for s in stems if f"{s}_domain_{domain}.png" not in names]
                if lost:
                    raise self._error(f"{len(lost)} of {len(stems)} files missing, first",
                                      folder / f"{lost[0]}_domain_{domain}.png")
                dirs[(domain, building)] = folder
            mask_dir = self._domain_dir("mask") / building
            if mask_dir.is_dir():
                names = listing(mask_dir)
                if all(f"{s}_domain_mask.png" in names for s in stems):
                    dirs[("mask", building)] = mask_dir
            records += [(building, s) for s in stems]
        return records, dirs

    def split_records(self, records: list[tuple[str, str]]) -> dict[str, list[tuple[str, str]]]:
        """train / val / test records (each in the scan order)."""
        n = len(records)
        seed = int(self.config["data_seed"])
        val_fraction = check_fraction(self.config["val_fraction"], "domain.data.val_fraction")
        test_buildings = [str(b) for b in self.config["test_buildings"]]
        if test_buildings:
            unknown = [b for b in test_buildings if b not in self.config["buildings"]]
            if unknown:
                raise UserError(f"domain.data.test_buildings: {unknown[0]!r} is not in domain.data.buildings "
                                f"({', '.join(self.config['buildings'])})")
            test = [i for i, (b, _) in enumerate(records) if b in test_buildings]
            rest = [i for i, (b, _) in enumerate(records) if b not in test_buildings]
            if not rest:
                raise UserError("domain.data.test_buildings: every building is a test building; none left to train on")
        else:
            test_fraction = check_fraction(self.config["test_fraction"], "domain.data.test_fraction")
            rest, test = carve(n, test_fraction, seed, "domain.data.test_fraction", what="images")
        # the validation carve of the non-test images, from a stream independent of the test draw
        keep, held = carve(len(rest), val_fraction, [seed, 1], "domain.data.val_fraction", what="non-test images")
        val = [rest[i] for i in held]
        train = [rest[i] for i in keep]
        return {"train": [records[i] for i in train], "val": [records[i] for i in val],
                "test": [records[i] for i in test]}

    def load_split(self, split: str) -> DenseSplit:
        if split not in ("train", "val", "test"):
            raise ValueError(f"unknown split {split!r}; splits: train, val, test")
        records, dirs = self._scan()
        chosen = self.split_records(records)[split]
        reader = _TaskonomyReader(dirs, self.image_size, str(self.config["keypoint_edge_scaling"]))
        return DenseSplit(chosen, reader, augment=split == "train" and bool(self.config["augment"]),
                          seed=self.seed, names=[f"{b}/{s}" for b, s in chosen])
