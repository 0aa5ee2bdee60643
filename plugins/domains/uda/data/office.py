"""The ImageList UDA families: Office-31, Office-Home, VisDA-2017 and DomainNet.

The data are the images and ``image_list/*.txt`` files that the Transfer-Learning-Library
(tllib, github.com/thuml/Transfer-Learning-Library, ``tllib/vision/datasets``) downloads; the GH
paper's experiments use the same lists. Each list line is ``relative/path.jpg label`` with the
path relative to ``root`` (see :mod:`.image_list`). Nothing is downloaded here: a missing list
or image is a ``UserError`` naming ``domain.data.root``, the path, the expected tree and the
download links.

Splits. ``load(d, "train")`` is the domain's list with the augmenting training transform
(resize 256, random resized crop 224, flip, ImageNet normalisation). ``load(d, "test")``:

* Office-31, Office-Home, VisDA-2017: the *same* list with the test transform (resize 256,
  centre crop 224). This is the standard transductive UDA protocol of tllib and the GH paper:
  the unlabelled target training images are also the evaluation set (their labels are used
  only to score).
* DomainNet: the domain's separate ``<domain>_test.txt`` list (tllib's ``split='test'``).

Params: ``source``, ``target`` (two different domains), ``root`` (required), ``image_size``
(the crop, 224) and ``resize`` (256); smaller values make CPU runs and tests cheap.
"""
from __future__ import annotations

import os
import zlib

from torch.utils.data import Dataset

from mtl_platform.errors import UserError
from mtl_platform.params import REQUIRED, Param, resolve_params

from ..contract import UDAData, check_pair
from .image_list import ImageListDataset

__all__ = ["ImageListFamily", "Office31", "OfficeHome", "VisDA2017", "DomainNet"]

SPLITS = ("train", "test")


def _family_params(domains: tuple[str, ...]) -> tuple[Param, ...]:
    allowed = ", ".join(domains)
    return (
        Param("source", str, REQUIRED, f"labelled source domain ({allowed})", choices=domains),
        Param("target", str, REQUIRED, f"unlabelled target domain ({allowed}); not the source",
              choices=domains),
        Param("root", str, REQUIRED, "folder holding the images and image_list/ (tllib layout)"),
        Param("image_size", int, 224, "side of the (random or centre) crop fed to the network", bounds="[1, inf)"),
        Param("resize", int, 256, "side of the square the image is first resized to", bounds="[1, inf)"),
    )


class ImageListFamily(UDAData):
    """A UDA family stored as tllib ImageList files under ``root``.

    Subclasses set ``name``, ``domains``, ``num_classes``, ``layout`` (the expected tree),
    ``downloads`` (``(what, url)`` pairs) and ``list_file(domain, split)``.
    """

    layout: str = ""
    downloads: tuple[tuple[str, str], ...] = ()
    #: whether ``load(d, "test")`` is ``d``'s training list with the test transform (the
    #: transductive protocol) rather than a separate test list; for the domain's reports
    test_is_train: bool = True

    def __init__(self, seed: int = 0, **params):
        params = resolve_params(self.declared_params(), params, "domain.data")
        super().__init__(seed=seed, **params)
        check_pair(self.domains, params["source"], params["target"])
        self.root = os.path.expanduser(params["root"])
        self.image_size = params["image_size"]
        self.resize = params["resize"]
        if self.image_size > self.resize:
            raise UserError(f"domain.data.image_size: {self.image_size} is larger than domain.data.resize "
                            f"({self.resize}); the crop is taken from the resized image")
        self.image_shape = (3, self.image_size, self.image_size)

    def list_file(self, domain: str, split: str) -> str:
        """The list file of ``domain``'s ``split``, relative to ``root``."""
        raise NotImplementedError

    def hint(self) -> str:
        """The expected tree and the download links (for error messages)."""
        links = "; ".join(f"{what}: {url}" for what, url in self.downloads)
        return (f"expected the {type(self).__name__} tree (tllib layout) under domain.data.root: "
                f"{self.layout}; download and unpack {links}")

    def load(self, domain: str, split: str) -> Dataset:
        if domain not in self.domains:
            raise UserError(f"domain.data: {self.name} has no domain {domain!r}; domains: {', '.join(self.domains)}")
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        if not os.path.isdir(self.root):
            raise UserError(f"domain.data.root: {self.root} is not a directory; {self.hint()}")
        return ImageListDataset(
            self.root, os.path.join(self.root, self.list_file(domain, split)), train=split == "train",
            crop=self.image_size, resize=self.resize, seed=self.seed,
            stream=zlib.crc32(f"{self.name}/{domain}/{split}".encode()), num_classes=self.num_classes,
            where="domain.data.root", hint=self.hint())


_TSINGHUA = "https://cloud.tsinghua.edu.cn/f/"


class Office31(ImageListFamily):
    """Office-31 (Saenko et al. 2010): 31 classes of office objects in three domains,
    ``amazon`` (product photos), ``dslr`` and ``webcam``; lists ``image_list/<domain>.txt``.
    ``test`` = the target's training list with the test transform (module docstring)."""

    name = "office31"
    domains = ("amazon", "dslr", "webcam")
    num_classes = 31
    params = _family_params(domains)
    layout = ("amazon/images/<class>/*.jpg, dslr/images/<class>/*.jpg, webcam/images/<class>/*.jpg, "
              "image_list/{amazon,dslr,webcam}.txt")
    downloads = (("image_list", _TSINGHUA + "2c1dd9fbcaa9455aa4ad/?dl=1"),
                 ("amazon", _TSINGHUA + "ec12dfcddade43ab8101/?dl=1"),
                 ("dslr", _TSINGHUA + "a41d818ae2f34da7bb32/?dl=1"),
                 ("webcam", _TSINGHUA + "8a41009a166e4131adcd/?dl=1"))

    def list_file(self, domain: str, split: str) -> str:
        return f"image_list/{domain}.txt"


class OfficeHome(ImageListFamily):
    """Office-Home (Venkateswara et al. 2017): about 15,500 images of 65 classes in four domains
    ``Art``, ``Clipart``, ``Product``, ``Real_World``; lists ``image_list/<domain>.txt``.
    ``test`` = the target's training list with the test transform (module docstring)."""

    name = "office_home"
    domains = ("Art", "Clipart", "Product", "Real_World")
    num_classes = 65
    params = _family_params(domains)
    layout = ("Art/<class>/*.jpg, Clipart/<class>/*.jpg, Product/<class>/*.jpg, Real_World/<class>/*.jpg, "
              "image_list/{Art,Clipart,Product,Real_World}.txt")
    downloads = (("image_list", _TSINGHUA + "1b0171a188944313b1f5/?dl=1"),
                 ("Art", _TSINGHUA + "6a006656b9a14567ade2/?dl=1"),
                 ("Clipart", _TSINGHUA + "ae88aa31d2d7411dad79/?dl=1"),
                 ("Product", _TSINGHUA + "f219b0ff35e142b3ab48/?dl=1"),
                 ("Real_World", _TSINGHUA + "6c19f3f15bb24ed3951a/?dl=1"))

    def list_file(self, domain: str, split: str) -> str:
        return f"image_list/{domain}.txt"


class VisDA2017(ImageListFamily):
    """VisDA-2017 classification (Peng et al. 2017): 12 classes; ``synthetic`` = the rendered
    ``train/`` images (``image_list/train.txt``, about 152K), ``real`` = the ``validation/``
    photos (``image_list/validation.txt``, about 55K), the Synthetic->Real task of the GH paper.
    ``test`` = the target's list with the test transform (module docstring)."""

    name = "visda"
    domains = ("synthetic", "real")
    num_classes = 12
    params = _family_params(domains)
    layout = "train/<class>/*.png, validation/<class>/*.jpg, image_list/{train,validation}.txt"
    downloads = (("image_list", _TSINGHUA + "c107de37b8094c5398dc/?dl=1"),
                 ("train", _TSINGHUA + "c5f3ce59139144ec8221/?dl=1"),
                 ("validation", _TSINGHUA + "da70e4b1cf514ecea562/?dl=1"))
    _lists = {"synthetic": "image_list/train.txt", "real": "image_list/validation.txt"}

    def list_file(self, domain: str, split: str) -> str:
        return self._lists[domain]


class DomainNet(ImageListFamily):
    """DomainNet (Peng et al. 2019): about 600K images of 345 classes in six domains;
    ``image_list/<domain>_train.txt`` for ``train`` and ``image_list/<domain>_test.txt`` for
    ``test`` (the official split)."""

    name = "domainnet"
    domains = ("clipart", "infograph", "painting", "quickdraw", "real", "sketch")
    num_classes = 345
    params = _family_params(domains)
    test_is_train = False
    layout = ("<domain>/<class>/*.jpg for clipart, infograph, painting, quickdraw, real, sketch; "
              "image_list/<domain>_train.txt and image_list/<domain>_test.txt")
    downloads = (("image_list", _TSINGHUA + "bf0fe327e4b046eb89ba/?dl=1"),
                 ("clipart", _TSINGHUA + "f0515164a4864220b98b/?dl=1"),
                 ("infograph", _TSINGHUA + "98b19d5fc9884109a9cb/?dl=1"),
                 ("painting", _TSINGHUA + "11285ce9fbd34bb7b28c/?dl=1"),
                 ("quickdraw", _TSINGHUA + "6faa9efb498b494abf66/?dl=1"),
                 ("real", _TSINGHUA + "17a101842c564959b525/?dl=1"),
                 ("sketch", _TSINGHUA + "b305add26e9d47349495/?dl=1"))

    def list_file(self, domain: str, split: str) -> str:
        return f"image_list/{domain}_{split}.txt"
