"""Folders of numbered ``.npy`` files, one folder per modality: the MTAN/LibMTL layout.

``<root>/<split>/<modality>/<i>.npy`` for ``i`` in ``0..n-1`` (``split`` is ``train`` or ``val``;
``modality`` ``image``, ``label``, ``depth``, ...). Images are (H, W, 3) floats in [0, 1]; label
maps (H, W) with −1 = ignore; depth (H, W, 1) with 0 = invalid; normals (H, W, 3) with all-zero
= invalid. :class:`NpyFolder` reads one split folder lazily (memory-mapped, one sample at a
time); :class:`NpyBenchmark` is the shared :class:`DenseData` of NYUv2 and CityScapes: the
on-disk ``val/`` is the benchmark's **test** split and our ``val`` is carved from ``train/``.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from mtl_platform.errors import UserError
from mtl_platform.params import SEED_BOUNDS, Param

from ..contract import DenseData
from ._common import ROOT_KEY, check_root, data_root, defaults_with, listing, root_error
from .augment import KINDS, sample_generator, scale_crop_flip
from .splits import carve


def _numbered(folder: Path) -> set[str]:
    return {name for name in listing(folder) if name.endswith(".npy")}


def _to_image(arr: np.ndarray) -> torch.Tensor:
    if arr.ndim != 3:
        raise ValueError(f"image has shape {arr.shape}, expected (H, W, 3)")
    return torch.from_numpy(np.array(np.moveaxis(arr, -1, 0), dtype=np.float32))


def _to_channels(arr: np.ndarray) -> torch.Tensor:
    """(H, W, C) → float32 (C, H, W); (H, W) → (1, H, W)."""
    if arr.ndim == 2:
        arr = arr[..., None]
    return torch.from_numpy(np.array(np.moveaxis(arr, -1, 0), dtype=np.float32))


def _to_labels(arr: np.ndarray) -> torch.Tensor:
    """(H, W) or (H, W, 1) label map (stored as floats in the MTAN files) → int64, −1 kept."""
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    return torch.from_numpy(np.array(arr, dtype=np.int64))


_CONVERT = {"segmentation": _to_labels, "saliency": _to_labels, "depth": _to_channels,
            "disparity": _to_channels, "normals": _to_channels, "dense": _to_channels}


class NpyFolder(Dataset):
    """One ``<root>/<split>`` folder of numbered ``.npy`` files per modality.

    ``modalities`` maps task → (sub-folder, kind), kind one of :data:`augment.KINDS`. Samples
    are ``(image, {task: target})`` with the dense contract's tensors (image float32 (3, H, W);
    segmentation int64 (H, W); depth float32 (1, H, W); normals float32 (3, H, W)). ``indices``
    selects on-disk file numbers (a train/val carve); ``augment`` applies
    :func:`augment.scale_crop_flip` with draws from (``seed``, epoch, file number), the epoch
    set by :meth:`set_epoch`. A missing folder or file raises :class:`UserError` naming
    ``domain.data.root``; ``expected`` and ``hint`` (the tree and where to get the data) end
    that message.
    """

    def __init__(self, folder, modalities: Mapping[str, tuple[str, str]], *, indices=None,
                 augment: bool = False, seed: int = 0, scales: Sequence[float] = (1.0, 1.2, 1.5),
                 flip: bool = True, image_dir: str = "image", expected: str = "", hint: str = ""):
        self.folder = Path(folder)
        self.modalities = {task: (sub, kind) for task, (sub, kind) in modalities.items()}
        for task, (_, kind) in self.modalities.items():
            if kind not in KINDS:
                raise ValueError(f"unknown kind {kind!r} of task {task!r}; kinds: {', '.join(KINDS)}")
        self.kinds = {task: kind for task, (_, kind) in self.modalities.items()}
        self.image_dir = image_dir
        self.expected, self.hint = expected, hint
        self.num_files = self._scan()
        self.indices = list(range(self.num_files)) if indices is None else [int(i) for i in indices]
        bad = [i for i in self.indices if not 0 <= i < self.num_files]
        if bad:
            raise ValueError(f"indices {bad[:5]} outside 0..{self.num_files - 1} of {self.folder}")
        self.augment = bool(augment)
        self.seed = int(seed)
        self.scales = tuple(float(s) for s in scales)
        self.flip = bool(flip)
        self.epoch = 0
        self.image_size = self._first_image_size()

    # -- checks ---------------------------------------------------------------------------
    def _missing(self, path: Path, what: str) -> UserError:
        tail = "".join(f"; {part}" for part in (self.expected, self.hint) if part)
        return UserError(f"{ROOT_KEY}: {what} {path}{tail}")

    def _scan(self) -> int:
        if not self.folder.is_dir():
            raise self._missing(self.folder, "no folder")
        image_names = _numbered(self.folder / self.image_dir)
        if not image_names:
            raise self._missing(self.folder / self.image_dir, "no .npy files in")
        n = len(image_names)
        wanted = {f"{i}.npy" for i in range(n)}
        for sub in [self.image_dir] + [sub for sub, _ in self.modalities.values()]:
            names = image_names if sub == self.image_dir else _numbered(self.folder / sub)
            if not names:
                raise self._missing(self.folder / sub, "no .npy files in")
            lost = wanted - names
            if lost:
                first = min(lost, key=lambda name: int(name[:-4]) if name[:-4].isdigit() else -1)
                raise self._missing(self.folder / sub / first,
                                    f"{len(lost)} of the files 0..{n - 1}.npy missing, first")
        return n

    def _first_image_size(self) -> tuple[int, int]:
        arr = np.load(self.folder / self.image_dir / "0.npy", mmap_mode="r")
        return int(arr.shape[0]), int(arr.shape[1])

    # -- the dataset ----------------------------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        """The epoch whose augmentation draws the next samples use."""
        self.epoch = int(epoch)

    def subset(self, indices, augment: bool | None = None) -> "NpyFolder":
        """The same folder restricted to on-disk file numbers ``indices`` (no re-scan)."""
        out = copy.copy(self)
        out.indices = [int(i) for i in indices]
        bad = [i for i in out.indices if not 0 <= i < self.num_files]
        if bad:
            raise ValueError(f"indices {bad[:5]} outside 0..{self.num_files - 1} of {self.folder}")
        if augment is not None:
            out.augment = bool(augment)
        return out

    def __len__(self) -> int:
        return len(self.indices)

    def _load(self, sub: str, number: int) -> np.ndarray:
        return np.load(self.folder / sub / f"{number}.npy", mmap_mode="r")

    def __getitem__(self, i: int):
        number = self.indices[i]
        image = _to_image(self._load(self.image_dir, number))
        size = tuple(image.shape[-2:])
        targets = {}
        for task, (sub, kind) in self.modalities.items():
            target = _CONVERT[kind](self._load(sub, number))
            if tuple(target.shape[-2:]) != size:
                raise ValueError(f"{self.folder / sub / f'{number}.npy'} is {tuple(target.shape[-2:])}, "
                                 f"its image is {size}")
            targets[task] = target
        if size != self.image_size:
            raise ValueError(f"{self.folder / self.image_dir / f'{number}.npy'} is {size}, "
                             f"0.npy is {self.image_size}: every sample of a split must have one size")
        if self.augment:
            image, targets = scale_crop_flip(image, targets, self.kinds,
                                             sample_generator(self.seed, self.epoch, number),
                                             scales=self.scales, flip=self.flip)
        return image, targets


def carve_validation(n: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(train, val) file numbers: ``round(n * fraction)`` of ``range(n)`` (at least one when
    ``fraction > 0``) chosen by ``seed`` for validation, the rest for training; both sorted."""
    return carve(n, fraction, seed)


class NpyBenchmark(DenseData):
    """Shared logic of the MTAN/LibMTL-preprocessed benchmarks (NYUv2, CityScapes).

    Subclasses set ``name``, ``image_size``, ``expected`` (the folder tree), ``hint`` (where to
    get the data) and implement ``build_tasks`` and ``modalities(split_folder)``. Splits:
    ``train`` and ``val`` are a ``data_seed`` carve of the on-disk ``train/`` (``val_fraction``
    to validation); ``test`` is the on-disk ``val/``. Only ``train`` is augmented.
    ``image_size`` becomes that of the files once a split is loaded.
    """

    params = (
        Param("root", str, help="folder holding train/ and val/ (the preprocessed .npy files)"),
        Param("val_fraction", float, 0.1, "share of the on-disk train/ held out as our validation split "
              "(the on-disk val/ is the benchmark's test split)", bounds="[0, 1)"),
        Param("data_seed", int, 0, "seed of the train/validation carve", bounds=SEED_BOUNDS),
        Param("augment", bool, True, "random scale-crop (1, 1.2, 1.5) and horizontal flip of training samples"),
        Param("pixel_metric", str, "accuracy", "segmentation's pixel metric: accuracy (higher is better) "
              "or error (1 − accuracy)", choices=("accuracy", "error")),
    )

    expected: str = ""
    hint: str = ""

    def __init__(self, seed: int = 0, **params):
        super().__init__(seed, **defaults_with(type(self), params))

    # -- what subclasses provide ----------------------------------------------------------
    def modalities(self, split_folder: Path) -> dict[str, tuple[str, str]]:
        """task → (sub-folder, kind) in ``split_folder`` (``<root>/train`` or ``<root>/val``)."""
        raise NotImplementedError

    # -- splits ---------------------------------------------------------------------------
    @property
    def root(self) -> Path:
        return data_root(self.config)

    def _check_root(self) -> None:
        check_root(self.config, self.expected, self.hint)

    def _folder(self, on_disk: str, **kwargs) -> NpyFolder:
        folder = self.root / on_disk
        if not folder.is_dir():
            raise root_error("no folder", folder, self.expected, self.hint)
        return NpyFolder(folder, self.modalities(folder), seed=self.seed, expected=self.expected,
                         hint=self.hint, **kwargs)

    def load_split(self, split: str) -> NpyFolder:
        if split not in ("train", "val", "test"):
            raise ValueError(f"unknown split {split!r}; splits: train, val, test")
        self._check_root()
        if split == "test":
            data = self._folder("val", augment=False)
        else:
            full = self._folder("train")
            train, val = carve_validation(full.num_files, float(self.config["val_fraction"]),
                                          int(self.config["data_seed"]))
            data = (full.subset(train, augment=bool(self.config["augment"])) if split == "train"
                    else full.subset(val, augment=False))
        self.image_size = data.image_size
        return data
