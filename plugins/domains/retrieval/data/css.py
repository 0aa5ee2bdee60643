"""The CSS dataset of the TIRG release (Vo et al., CVPR 2019, §4.1) from local files.

Layout, as the release distributes it (https://github.com/google/tirg, "CSS" data link):

    <root>/css_toy_dataset_novel2_small.dup.npy
    <root>/images/css_{train,test}_{index:06d}.png

The ``.npy`` file, as the release's own loader reads it (``CSSDataset`` in the TIRG repository's
``datasets.py``: ``np.load(...).item()``; no real file could be checked here): a 0-d numpy object
array pickled by Python 2, holding a dict, read here without ``allow_pickle``'s arbitrary code, by
a restricted unpickler that admits numpy arrays and plain Python values only:

- ``data[split]`` for ``split`` in ``train``, ``test``, each a dict with
  - ``objects_img``: one entry per image of the split (image ``i`` is ``css_{split}_{i:06d}.png``),
    the scene's objects (dicts with ``shape``, ``color``, ``size``, ``pos``);
  - ``mods``: a list of modifications, each a dict with ``from`` and ``to`` (equal-length lists of
    image indices: each (from[k], to[k]) is one query/target pair) and ``to_str`` (the
    modification text, shared by every pair of the entry);
  - optionally ``labels``: one int per image; images with equal labels show the same scene (the
    ".dup" in the file name). Without it each image is its own scene (TIRG's own fallback).

A retrieved image is correct when its label equals the target's (TIRG's CSS test protocol);
the query image is left out of its own gallery. CSS has no validation split: ``val_fraction`` of
the training queries (seeded by ``data_seed``) are held out as validation queries over the
training images, and are not trained on; the test split is the release's ``test``.
"""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

from mtl_platform.errors import UserError
from mtl_platform.params import Param

from .contract import RetrievalData, RetrievalSplit

FILE = "css_toy_dataset_novel2_small.dup.npy"
WHERE = "the TIRG release, https://github.com/google/tirg (CSS dataset link in its README)"
_ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
            ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
            ("numpy", "ndarray"), ("numpy", "dtype")}


class _Unpickler(pickle.Unpickler):
    """Admits numpy arrays, dtypes and scalars; any other global is refused."""

    def find_class(self, module, name):
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a CSS file")


def read_npy_object(path: Path):
    """The object held by a ``.npy`` file of a pickled object array (``np.save`` of a dict),
    through the restricted unpickler; a plain array is returned as it is."""
    from numpy.lib import format as npformat

    with open(path, "rb") as f:
        version = npformat.read_magic(f)
        header = npformat.read_array_header_1_0 if version == (1, 0) else npformat.read_array_header_2_0
        shape, _, dtype = header(f)
        if not dtype.hasobject:
            f.seek(0)
            return np.load(f, allow_pickle=False)
        array = _Unpickler(f, encoding="latin1").load()
    return array.item() if isinstance(array, np.ndarray) and array.shape == () else array


def _need(path: Path, what: str) -> Path:
    if not path.exists():
        raise UserError(f"domain.data.root: {what} {str(path)!r} not found; get the CSS dataset from {WHERE} "
                        f"(layout: <root>/{FILE} and <root>/images/css_<split>_<index:06d>.png)")
    return path


def _png(path: Path, size: int) -> np.ndarray:
    from PIL import Image

    with Image.open(_need(path, "image")) as im:
        im = im.convert("RGB")
        if im.size != (size, size):
            im = im.resize((size, size), Image.BILINEAR)
        return np.asarray(im, dtype=np.uint8).transpose(2, 0, 1).copy()


class CSS(RetrievalData):
    """CSS (Vo et al., CVPR 2019) read from the release's files (module docstring)."""

    name = "css"
    params = (
        Param("root", str, "data/css", f"folder holding {FILE} and images/"),
        Param("image_size", int, 64, "images are resized to this side (pixels)", bounds="[8, 1024]"),
        Param("val_fraction", float, 0.05, "training queries held out for validation", bounds="(0, 1)"),
        Param("data_seed", int, 0, "seed of the validation hold-out", bounds="[0, inf)"),
    )

    def __init__(self, seed: int = 0, **params):
        super().__init__(seed, **params)
        self._data = None
        self._images: dict[str, torch.Tensor] = {}  # train and val share the training images

    def data(self) -> dict:
        if self._data is None:
            path = _need(Path(self.root).expanduser() / FILE, "file")
            try:
                data = read_npy_object(path)
            except (OSError, ValueError, pickle.UnpicklingError, EOFError) as exc:
                raise UserError(f"domain.data.root: cannot read {str(path)!r} as the CSS file ({exc})") from None
            for split in ("train", "test"):
                part = data.get(split) if isinstance(data, dict) else None
                if not isinstance(part, dict) or "objects_img" not in part or "mods" not in part:
                    raise UserError(f"domain.data.root: {str(path)!r} has no {split!r} entry with 'objects_img' "
                                    f"and 'mods'; is it the TIRG release's {FILE}?")
            self._data = data
        return self._data

    def pairs(self, split: str) -> tuple[list[int], list[int], list[str]]:
        """Every (source, target, text) of ``split`` in file order."""
        source, target, texts = [], [], []
        for mod in self.data()[split]["mods"]:
            for f, t in zip(mod["from"], mod["to"]):
                source.append(int(f))
                target.append(int(t))
                texts.append(str(mod["to_str"]))
        return source, target, texts

    def load(self, split: str) -> RetrievalSplit:
        part = "test" if split == "test" else "train"
        entry = self.data()[part]
        n = len(entry["objects_img"])
        labels = entry.get("labels")
        scenes = torch.as_tensor(np.asarray(labels, dtype=np.int64) if labels is not None else np.arange(n))
        if part not in self._images:
            folder = _need(Path(self.root).expanduser() / "images", "folder")
            self._images[part] = torch.from_numpy(np.stack([_png(folder / f"css_{part}_{i:06d}.png",
                                                                 self.image_size) for i in range(n)]))
        images = self._images[part]
        source, target, texts = self.pairs(part)
        if part == "train":
            order = np.random.default_rng(self.data_seed).permutation(len(source))
            k = max(1, int(round(self.val_fraction * len(source))))
            keep = sorted(order[:k].tolist() if split == "val" else order[k:].tolist())
            source, target, texts = [source[i] for i in keep], [target[i] for i in keep], [texts[i] for i in keep]
        return RetrievalSplit(images, scenes, torch.tensor(source), torch.tensor(target), texts)
