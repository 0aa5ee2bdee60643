"""``scenes``: a procedurally generated, SYNTHETIC dense-prediction data source (the default).

No dense-prediction data can be downloaded everywhere, so the platform renders its own: random
3-D primitives ray-cast into an image with exact per-pixel semantic class, depth and surface
normals (:mod:`.scenes_render`). It exists so that dense multi-task learning runs end to end on
a laptop in seconds; it is not a benchmark of the literature.
"""
from __future__ import annotations

import torch

from mtl_platform.batches import TensorTaskDataset
from mtl_platform.errors import UserError
from mtl_platform.params import SEED_BOUNDS, Param

from ..contract import DenseData
from .scenes_render import CLASSES, NUM_CLASSES, render_scenes

SPLITS = ("train", "val", "test")


def split_seed(data_seed: int, split: str) -> int:
    """The generator seed of one split: a fixed function of (``data_seed``, split)."""
    return (int(data_seed) * 1_000_003 + (SPLITS.index(split) + 1) * 7_919 + 2_718_281) % (2**63)


class Scenes(DenseData):
    """Procedural 3-D scenes (SYNTHETIC): semantic segmentation, depth and surface normals.

    Each image is rendered by exact ray casting (one ray per pixel centre) of a pinhole camera
    (60° horizontal field of view, 1.3–1.8 m high, pitched 12–25° down, yawed ±20°) looking
    at a floor and a back wall 6–10 m away, with 1..``max_objects`` random primitives standing
    on the floor: spheres, yaw-rotated boxes and vertical cylinders of random size, position
    and colour. Colours of all surfaces (floor and wall included) come from one distribution,
    independent of the class, and half the surfaces get a 3-D checker texture; shading is
    Lambertian from a random directional light plus ambient, with cast shadows, gamma 1/2.2 and
    per-pixel noise. All targets come from the same ray hits, so they are mutually consistent.

    Tasks and targets:

    * ``segmentation``: int64 (H, W), classes 0 floor, 1 wall, 2 sphere, 3 box, 4 cylinder
      (:data:`CLASSES`); the wall closes the scene, so every pixel is labelled (−1 never
      occurs in these random scenes).
    * ``depth``: float32 (1, H, W), the z coordinate of the hit in the camera frame, in metres
      (about 1.4–13); always > 0 here (0 would mean invalid).
    * ``normal``: float32 (3, H, W), unit surface normals in the camera frame (x right, y up,
      z forward along the optical axis), pointing towards the camera; the floor's normal is
      (0, cos pitch, −sin pitch).

    Images: float32 (3, H, W), rendered in [0, 1] then normalised per channel with the fixed
    :data:`~.scenes_render.IMAGE_MEAN` / :data:`~.scenes_render.IMAGE_STD` (roughly zero mean,
    unit standard deviation). The three splits are independent scene sets drawn from seeds
    derived from (``data_seed``, split), so the data is a pure function of the parameters (the
    run's ``seed`` does not change it); each split is rendered on first use (about 2 s per
    1,000 images at 64 × 64 on one core) and kept in memory. No augmentation.
    """

    name = "scenes"
    params = (
        Param("image_size", list, [64, 64], "H, W of the rendered images (both >= 16)", item=int, bounds="[16, inf)"),
        Param("train_images", int, 1000, "images in the training split", bounds="[1, inf)"),
        Param("val_images", int, 200, "images in the validation split", bounds="[1, inf)"),
        Param("test_images", int, 200, "images in the test split", bounds="[1, inf)"),
        Param("data_seed", int, 0, "seed of the scenes (each split draws its own from it)", bounds=SEED_BOUNDS),
        Param("max_objects", int, 4, "at most this many primitives per image (at least one)", bounds="[1, inf)"),
    )

    #: class names by segmentation id
    classes = CLASSES

    def __init__(self, seed: int = 0, **params):
        defaults = {p.name: (list(p.default) if isinstance(p.default, list) else p.default)
                    for p in self.declared_params()}
        super().__init__(seed, **{**defaults, **params})
        size = self.config["image_size"]
        if (not isinstance(size, (list, tuple)) or len(size) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 16 for v in size)):
            raise UserError(f"domain.data.image_size: got {size!r}, expected [H, W], two ints >= 16")
        self._splits: dict[str, TensorTaskDataset] = {}

    @property
    def image_size(self) -> tuple[int, int]:
        size = self.config["image_size"]
        return int(size[0]), int(size[1])

    def build_tasks(self):
        from ..tasks.depth import DepthTask
        from ..tasks.normals import NormalTask
        from ..tasks.segmentation import SegmentationTask

        return [SegmentationTask("segmentation", num_classes=NUM_CLASSES, ignore_index=-1),
                DepthTask("depth"),
                NormalTask("normal", spread="median")]

    def load_split(self, split: str) -> TensorTaskDataset:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; splits: {', '.join(SPLITS)}")
        if split not in self._splits:
            generator = torch.Generator().manual_seed(split_seed(self.config["data_seed"], split))
            images, seg, depth, normals = render_scenes(
                int(self.config[f"{split}_images"]), self.image_size, generator,
                max_objects=int(self.config["max_objects"]), normalize=True)
            self._splits[split] = TensorTaskDataset(images, {"segmentation": seg, "depth": depth, "normal": normals})
        return self._splits[split]
