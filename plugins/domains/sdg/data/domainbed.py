"""The DomainBed image-folder families: PACS, VLCS, OfficeHome, TerraIncognita and DomainNet.

Layout, as DomainBed's ``domainbed/scripts/download.py`` leaves it and its ``datasets.py`` reads
it (github.com/facebookresearch/DomainBed): ``root/<dataset folder>/<domain>/<class>/<image>``,
one sub-folder per domain, one sub-folder per class inside it, read with torchvision's
``ImageFolder`` (classes are the sorted class folder names; labels their positions).

Each family (``name``): dataset folder; domains, with DomainBed's short names as aliases;
the benchmark's classes; DomainBed's download function:

* ``pacs``: ``PACS``; art_painting (A), cartoon (C), photo (P), sketch (S); 7; ``download_pacs``.
* ``vlcs``: ``VLCS``; Caltech101 (C), LabelMe (L), SUN09 (S), VOC2007 (V); 5; ``download_vlcs``.
* ``office_home``: ``office_home``; Art (A), Clipart (C), Product (P), Real World (R, real_world);
  65; ``download_office_home``.
* ``terra_incognita``: ``terra_incognita``; location_100 (L100), location_38 (L38), location_43
  (L43), location_46 (L46); 10; ``download_terra_incognita``.
* ``domainnet``: ``domain_net``; clipart (clip), infograph (info), painting (paint), quickdraw
  (quick), real, sketch; 345; ``download_domain_net``.

The last three download functions are commented out in the script's ``__main__``: uncomment the
one you need. The class counts are the benchmarks'; the family takes the classes it finds, and
refuses (one line) domains whose class lists differ. Every domain named by ``source`` and ``targets`` is
checked when the family is built, so a missing folder fails before training.

Images: RGB, resized to ``image_size`` x ``image_size`` (default 224; a square warp, bilinear,
antialiased, as DomainBed's ``Resize((224, 224))``), ``ToTensor`` (float32 in [0, 1]); no random
crop or flip here (augmentation is the synthesis' job); the domain normalises with the ImageNet
mean (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225).

Splits: ``test`` is all of a domain's images. ``train`` / ``val`` split a (source) domain as
DomainBed does: a random ``floor(holdout_fraction * n)`` of its images (0.2 by default, not
stratified) is ``val`` (training-domain validation), the rest ``train``; the permutation comes
from ``numpy.random.default_rng(mix_seed(data_seed, crc32(domain)))``.
"""
from __future__ import annotations

import math
import os
import zlib

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision.datasets import ImageFolder
from torchvision.datasets.folder import default_loader, find_classes
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF

from mtl_platform.batches import mix_seed
from mtl_platform.errors import UserError
from mtl_platform.params import SEED_BOUNDS, Param, resolve_params

from ...uda.data.image_list import IMAGENET_MEAN, IMAGENET_STD
from ..contract import SDGData
from .domains import check_domains

__all__ = ["DomainBedFamily", "FolderDataset", "PACS", "VLCS", "OfficeHome", "TerraIncognita", "DomainNet"]

SPLITS = ("train", "val", "test")
REPO = "github.com/facebookresearch/DomainBed"


class FolderDataset(Dataset):
    """``(image float32 (3, S, S) in [0, 1], label int64 ())`` for the ``indices`` of an
    ``ImageFolder``'s samples, resized deterministically (module docstring)."""

    def __init__(self, folder: ImageFolder, indices: np.ndarray, size: int):
        self.folder = folder
        self.indices = np.asarray(indices, dtype=np.int64)
        self.size = int(size)
        self.labels = torch.tensor([folder.targets[i] for i in self.indices], dtype=torch.int64)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int):
        path, label = self.folder.samples[int(self.indices[index])]
        try:
            image = default_loader(path)
        except OSError as exc:
            raise UserError(f"domain.data.root: cannot read image {path}: {exc}") from None
        image = TF.resize(image, [self.size, self.size], InterpolationMode.BILINEAR, antialias=True)
        return TF.to_tensor(image), torch.tensor(label, dtype=torch.int64)


class DomainBedFamily(SDGData):
    """A DomainBed benchmark stored as ``root/<folder>/<domain>/<class>/<image>``.

    Subclasses set ``name``, ``folder`` (the dataset folder), ``domains``, ``aliases``,
    ``num_classes`` (the benchmark's) and ``download`` (DomainBed's download function)."""

    folder: str = ""
    download: str = ""
    aliases: dict[str, str] = {}
    mean = IMAGENET_MEAN
    std = IMAGENET_STD
    image_shape = (3, 224, 224)
    params = (
        Param("source", object, None, "the source domain, or a list of them (multi-domain generalisation)",
              optional=True),
        Param("targets", object, None, "unseen target domains, a name or a list (null: every other domain)",
              optional=True),
        Param("root", str, None, "the DomainBed data folder (its download.py --data_dir): "
              "root/<dataset folder>/<domain>/<class>/<image>", optional=True),
        Param("image_size", int, 224, "side of the square every image is resized to", bounds="[1, inf)"),
        Param("holdout_fraction", float, 0.2, "fraction of each source domain kept for validation (DomainBed's)",
              bounds="(0, 1)"),
        Param("data_seed", int, 0, "seed of the train/val split", bounds=SEED_BOUNDS),
    )

    def __init__(self, seed: int = 0, **params):
        params = resolve_params(self.declared_params(), params, "domain.data")
        sources, targets = check_domains(self.name, self.domains, params["source"], params["targets"],
                                         self.aliases)
        params["source"], params["targets"] = sources[0] if len(sources) == 1 else sources, targets
        super().__init__(seed=seed, **params)
        self.image_size = params["image_size"]
        self.holdout_fraction = params["holdout_fraction"]
        self.data_seed = params["data_seed"]
        self.image_shape = (3, self.image_size, self.image_size)
        self.root = self._dataset_dir(params["root"])
        self.classes = self._common_classes(sources + targets)
        self.num_classes = len(self.classes)

    # -- layout checks --------------------------------------------------------------------------
    def layout(self) -> str:
        """The expected tree and where to get it, for error messages."""
        return (f"expected <root>/{self.folder}/<domain>/<class>/<image> (DomainBed's layout) with domains "
                f"{', '.join(self.domains)}; get it with DomainBed's domainbed/scripts/download.py --data_dir "
                f"<root> ({self.download}; {REPO})")

    def _dataset_dir(self, root: str | None) -> str:
        if root is None:
            raise UserError(f"domain.data.root: {self.name} needs the DomainBed data folder (root is null); "
                            + self.layout())
        root = os.path.expanduser(root)
        if not os.path.isdir(root):
            raise UserError(f"domain.data.root: {root} is not a directory; {self.layout()}")
        path = os.path.join(root, self.folder)
        if not os.path.isdir(path):
            raise UserError(f"domain.data.root: no {self.folder} folder under {root} ({path} is missing); "
                            + self.layout())
        return path

    def domain_dir(self, domain: str) -> str:
        """``root/<folder>/<domain>``, or a ``UserError`` naming it."""
        path = os.path.join(self.root, domain)
        if not os.path.isdir(path):
            raise UserError(f"domain.data.root: domain {domain!r} of {self.name} not found ({path} is missing); "
                            + self.layout())
        return path

    def classes_of(self, domain: str) -> list[str]:
        """The sorted class folders of ``domain``."""
        path = self.domain_dir(domain)
        try:
            classes, _ = find_classes(path)
        except FileNotFoundError:
            raise UserError(f"domain.data.root: {path} has no class folders; {self.layout()}") from None
        return classes

    def _common_classes(self, domains: list[str]) -> list[str]:
        first = self.classes_of(domains[0])
        for domain in domains[1:]:
            other = self.classes_of(domain)
            if other != first:
                only_first = sorted(set(first) - set(other))
                only_other = sorted(set(other) - set(first))
                raise UserError(f"domain.data.root: the domains of {self.name} must share one class list, but "
                                f"{domains[0]} has {len(first)} classes and {domain} {len(other)} (only in "
                                f"{domains[0]}: {', '.join(only_first) or 'none'}; only in {domain}: "
                                f"{', '.join(only_other) or 'none'}) under {self.root}")
        return first

    # -- data -------------------------------------------------------------------------------------
    def load(self, domain: str, split: str) -> Dataset:
        if domain not in self.domains:
            raise UserError(f"domain.data: {self.name} has no domain {domain!r}; domains: {', '.join(self.domains)}")
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        self._common_classes([self.sources()[0], domain])
        path = self.domain_dir(domain)
        try:
            folder = ImageFolder(path)
        except FileNotFoundError as exc:  # a class folder without any image
            raise UserError(f"domain.data.root: {exc} (under {path}); {self.layout()}") from None
        n = len(folder.samples)
        if split == "test":
            indices = np.arange(n)
        else:
            order = np.random.default_rng(mix_seed(self.data_seed, zlib.crc32(domain.encode()))).permutation(n)
            n_val = int(math.floor(self.holdout_fraction * n))
            indices = np.sort(order[:n_val] if split == "val" else order[n_val:])
        return FolderDataset(folder, indices, self.image_size)


class PACS(DomainBedFamily):
    """PACS (Li et al., ICCV 2017): photo, art painting, cartoon, sketch; 7 classes."""

    name = "pacs"
    folder = "PACS"
    domains = ("art_painting", "cartoon", "photo", "sketch")
    aliases = {"A": "art_painting", "C": "cartoon", "P": "photo", "S": "sketch"}
    num_classes = 7
    download = "download_pacs"


class VLCS(DomainBedFamily):
    """VLCS (Fang et al., ICCV 2013): VOC2007, LabelMe, Caltech101, SUN09; 5 classes."""

    name = "vlcs"
    folder = "VLCS"
    domains = ("Caltech101", "LabelMe", "SUN09", "VOC2007")
    aliases = {"C": "Caltech101", "L": "LabelMe", "S": "SUN09", "V": "VOC2007"}
    num_classes = 5
    download = "download_vlcs"


class OfficeHome(DomainBedFamily):
    """Office-Home (Venkateswara et al., CVPR 2017): Art, Clipart, Product, Real World; 65 classes."""

    name = "office_home"
    folder = "office_home"
    domains = ("Art", "Clipart", "Product", "Real World")
    aliases = {"A": "Art", "C": "Clipart", "P": "Product", "R": "Real World", "real_world": "Real World"}
    num_classes = 65
    download = "download_office_home, commented out in its __main__"


class TerraIncognita(DomainBedFamily):
    """Terra Incognita (Beery et al., ECCV 2018) as DomainBed subsets it: four camera-trap
    locations, 10 classes."""

    name = "terra_incognita"
    folder = "terra_incognita"
    domains = ("location_100", "location_38", "location_43", "location_46")
    aliases = {"L100": "location_100", "L38": "location_38", "L43": "location_43", "L46": "location_46"}
    num_classes = 10
    download = "download_terra_incognita, commented out in its __main__"


class DomainNet(DomainBedFamily):
    """DomainNet (Peng et al., ICCV 2019): six domains, 345 classes."""

    name = "domainnet"
    folder = "domain_net"
    domains = ("clipart", "infograph", "painting", "quickdraw", "real", "sketch")
    aliases = {"clip": "clipart", "info": "infograph", "paint": "painting", "quick": "quickdraw"}
    num_classes = 345
    download = "download_domain_net, commented out in its __main__"
