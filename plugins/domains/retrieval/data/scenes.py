"""Procedural CSS-like scenes: a SYNTHETIC composed-retrieval benchmark that runs offline.

After the CSS dataset of TIRG (Vo et al., CVPR 2019, §4.1), drawn in 2-D: a scene holds 2…5
objects on a 3×3 grid, at most one per cell; an object is a shape (``cube`` drawn as a square,
``sphere`` as a disc, ``cylinder`` as an upright rectangle), a colour (gray, red, blue, green,
brown, purple, cyan, yellow) and a size (small, large). Rendered on a white canvas at 4× the
resolution and averaged down to ``image_size`` (antialiased edges), each object shifted by up to
a tenth of a cell at random, so two images of one scene differ in pixels.

Modifications (the three CSS kinds), each with an EXACT target scene:

- ``add <size> <colour> <shape> to <row>-<column>`` (an empty cell: top/middle/bottom ×
  left/center/right);
- ``remove <size> <colour> <shape>`` (an object no other object of the scene matches in all three);
- ``make <colour> <shape> <new colour>``, ``make <colour> <shape> <small|large>``,
  ``make <colour> <shape> a <new shape>`` (an object no other matches in colour and shape).

Each base scene gets ``mods_per_scene`` different modifications with different targets (the
queries) and ``distractors_per_scene`` further modified copies that no query asks for, so the
gallery holds many near copies of every query image and the text decides which one is right: an
image-only ranking cannot tell them apart (docs/retrieval.md measures it). A split's images are
its base scenes, every target and every distractor; a retrieved image is correct when its scene
equals the target's (``scenes``: one id per distinct scene content of the split). Base scene ``b``
of a split, its modifications and its images' jitter are a pure function of (``data_seed``, split,
``b``); splits use different streams.
"""
from __future__ import annotations

import zlib

import numpy as np
import torch

from mtl_platform.batches import mix_seed
from mtl_platform.errors import UserError
from mtl_platform.params import Param

from .contract import RetrievalData, RetrievalSplit

SHAPES = ("cube", "sphere", "cylinder")
COLOURS = {"gray": (0.5, 0.5, 0.5), "red": (0.9, 0.1, 0.1), "blue": (0.15, 0.3, 0.9), "green": (0.1, 0.7, 0.1),
           "brown": (0.5, 0.3, 0.1), "purple": (0.55, 0.15, 0.75), "cyan": (0.1, 0.8, 0.8),
           "yellow": (1.0, 0.85, 0.1)}
SIZES = {"small": 0.2, "large": 0.38}  # half-side (radius) as a fraction of a cell
ROWS, COLUMNS = ("top", "middle", "bottom"), ("left", "center", "right")
SUPERSAMPLE = 4
JITTER = 0.1  # of a cell

Obj = tuple  # (shape, colour, size)


def position(cell: int) -> str:
    return f"{ROWS[cell // 3]}-{COLUMNS[cell % 3]}"


def random_object(rng: np.random.Generator) -> Obj:
    return (SHAPES[rng.integers(3)], list(COLOURS)[rng.integers(len(COLOURS))], list(SIZES)[rng.integers(2)])


def random_scene(rng: np.random.Generator, low: int, high: int) -> tuple:
    scene = [None] * 9
    for cell in rng.choice(9, size=int(rng.integers(low, high + 1)), replace=False):
        scene[int(cell)] = random_object(rng)
    return tuple(scene)


def modify(rng: np.random.Generator, scene: tuple) -> tuple[str, tuple] | None:
    """One random CSS modification of ``scene``: (text, target scene), or None if the drawn kind
    does not apply (no empty cell, no uniquely described object)."""
    kind = ("add", "remove", "make")[rng.integers(3)]
    cells = [i for i, o in enumerate(scene) if o is not None]
    out = list(scene)
    if kind == "add":
        empty = [i for i, o in enumerate(scene) if o is None]
        if not empty:
            return None
        cell = empty[rng.integers(len(empty))]
        shape, colour, size = out[cell] = random_object(rng)
        return f"add {size} {colour} {shape} to {position(cell)}", tuple(out)
    if kind == "remove":
        unique = [i for i in cells if sum(scene[j] == scene[i] for j in cells) == 1]
        if not unique or len(cells) < 2:
            return None
        cell = unique[rng.integers(len(unique))]
        shape, colour, size = scene[cell]
        out[cell] = None
        return f"remove {size} {colour} {shape}", tuple(out)
    unique = [i for i in cells if sum(scene[j][:2] == scene[i][:2] for j in cells) == 1]
    if not unique:
        return None
    cell = unique[rng.integers(len(unique))]
    shape, colour, size = scene[cell]
    attribute = ("colour", "size", "shape")[rng.integers(3)]
    if attribute == "colour":
        new = [c for c in COLOURS if c != colour][rng.integers(len(COLOURS) - 1)]
        out[cell] = (shape, new, size)
    elif attribute == "size":
        new = "small" if size == "large" else "large"
        out[cell] = (shape, colour, new)
    else:
        new = [s for s in SHAPES if s != shape][rng.integers(len(SHAPES) - 1)]
        out[cell] = (new, colour, size)
        new = f"a {new}"
    return f"make {colour} {shape} {new}", tuple(out)


def render(scene: tuple, size: int, rng: np.random.Generator) -> np.ndarray:
    """uint8 (3, size, size): the scene on white, supersampled ``SUPERSAMPLE``× and averaged down."""
    big = size * SUPERSAMPLE
    cell = big / 3
    canvas = np.ones((3, big, big), dtype=np.float32)
    ys, xs = np.mgrid[0:big, 0:big].astype(np.float32) + 0.5
    for i, obj in enumerate(scene):
        if obj is None:
            continue
        shape, colour, sz = obj
        cy = (i // 3 + 0.5 + rng.uniform(-JITTER, JITTER)) * cell
        cx = (i % 3 + 0.5 + rng.uniform(-JITTER, JITTER)) * cell
        r = SIZES[sz] * cell
        dy, dx = np.abs(ys - cy), np.abs(xs - cx)
        if shape == "cube":
            mask = (dy <= r) & (dx <= r)
        elif shape == "sphere":
            mask = dy ** 2 + dx ** 2 <= r ** 2
        else:
            mask = (dy <= r) & (dx <= 0.5 * r)
        canvas[:, mask] = np.asarray(COLOURS[colour], dtype=np.float32)[:, None]
    small = canvas.reshape(3, size, SUPERSAMPLE, size, SUPERSAMPLE).mean((2, 4))
    return np.round(small * 255).astype(np.uint8)


def plan_split(base: int, per_scene: int, low: int, high: int, seed: int, split: str, distractors: int = 0):
    """The scenes of ``split`` before rendering: (scene of every image, source, target, texts, the
    generator of each image's jitter). Image ``k`` is a base scene, a target or a distractor (a
    modification of the base scene no query asks for); query ``j`` is (``source[j]``, ``texts[j]``)
    → ``target[j]``."""
    stream = zlib.crc32(split.encode())
    keys, source, target, texts, rngs = [], [], [], [], []
    for b in range(base):
        rng = np.random.default_rng(mix_seed(seed, stream, b))
        scene = random_scene(rng, low, high)
        mods: dict[tuple, str] = {}
        for _ in range(200):
            found = modify(rng, scene)
            if found is not None and found[1] not in mods and found[1] != scene:
                mods[found[1]] = found[0]
            if len(mods) == per_scene + distractors:
                break
        origin = len(keys)
        keys.append(scene)
        for k, (goal, text) in enumerate(mods.items()):
            if k < per_scene:
                source.append(origin)
                target.append(len(keys))
                texts.append(text)
            keys.append(goal)
        rngs += [rng] * (1 + len(mods))
    return keys, source, target, texts, rngs


def make_split(base: int, per_scene: int, size: int, low: int, high: int, seed: int, split: str,
               distractors: int = 0) -> RetrievalSplit:
    """``base`` base scenes of ``split`` with ``per_scene`` modifications (queries) and
    ``distractors`` further modified copies each (module docstring)."""
    keys, source, target, texts, rngs = plan_split(base, per_scene, low, high, seed, split, distractors)
    images = [render(key, size, rng) for key, rng in zip(keys, rngs)]
    ids: dict[tuple, int] = {}
    scenes = [ids.setdefault(k, len(ids)) for k in keys]
    return RetrievalSplit(torch.from_numpy(np.stack(images)), torch.tensor(scenes), torch.tensor(source),
                          torch.tensor(target), texts)


class Scenes(RetrievalData):
    """Procedural CSS-like scenes (SYNTHETIC; module docstring)."""

    name = "scenes"
    params = (
        Param("image_size", int, 32, "side of the square images (pixels)", bounds="[8, 512]"),
        Param("train_scenes", int, 1000, "base scenes of the training split", bounds="[1, inf)"),
        Param("val_scenes", int, 100, "base scenes of the validation split", bounds="[1, inf)"),
        Param("test_scenes", int, 300, "base scenes of the test split", bounds="[1, inf)"),
        Param("mods_per_scene", int, 4, "modifications (queries) per base scene", bounds="[1, 20]"),
        Param("distractors_per_scene", int, 8, "further modified copies of each base scene in the "
              "validation and test galleries, asked for by no query (training never ranks a gallery)", bounds="[0, 40]"),
        Param("min_objects", int, 2, "fewest objects in a base scene", bounds="[1, 8]"),
        Param("max_objects", int, 5, "most objects in a base scene", bounds="[1, 8]"),
        Param("data_seed", int, 0, "seed of every scene", bounds="[0, inf)"),
    )

    def __init__(self, seed: int = 0, **params):
        super().__init__(seed, **params)
        if self.min_objects > self.max_objects:
            raise UserError(f"domain.data.min_objects: got {self.min_objects}, expected at most max_objects "
                            f"({self.max_objects})")

    def load(self, split: str) -> RetrievalSplit:
        return make_split(self.values[f"{split}_scenes"], self.mods_per_scene, self.image_size, self.min_objects,
                          self.max_objects, self.data_seed, split,
                          0 if split == "train" else self.distractors_per_scene)
