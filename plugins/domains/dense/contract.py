"""The seam between the dense-prediction domain and its data sources (DESIGN.md §3.3, sub-kinds).

A data source is a sub-kind ``dense.data`` (``nyuv2``, ``cityscapes``, ``pascal_context``,
``taskonomy``, ``scenes``, or a third party's), chosen in a config as ``domain.data: nyuv2`` or
``domain.data: {name: nyuv2, root: ..., <its params>}``. It says which tasks it has and
serves the three splits as datasets of ``(image, {task: target})`` samples; the ``dense``
domain adds the backbone, the heads and the trainer protocol.
"""
from __future__ import annotations

from torch.utils.data import Dataset

from mtl_platform.contracts import Configurable, Task


class DenseData(Configurable):
    """One dense-prediction data source.

    Samples are ``(image, targets)``: ``image`` a float32 tensor (3, H, W), normalised as the
    source's benchmark does; ``targets[task]`` per task kind — segmentation int64 (H, W) with
    ``ignore_index`` −1; depth float32 (1, H, W) with 0 = invalid; normals float32 (3, H, W)
    unit vectors, all-zero = invalid; saliency int64 (H, W) in {0, 1}, −1 ignored; keypoints
    and edges float32 (1, H, W). Every sample of a split has the same H, W (``image_size``),
    so the default collation stacks them.

    ``load_split(split)`` returns the split's dataset; ``val`` must never come from the test
    data (carve it from the training data when the benchmark has none). Training datasets may
    augment; their random draws must be pure functions of (``seed``, epoch, index) — the
    domain calls ``dataset.set_epoch(epoch)`` before each training epoch when it exists.
    """

    #: H, W of every image and target this source yields
    image_size: tuple[int, int] = (0, 0)

    def __init__(self, seed: int = 0, **params):
        self.seed = int(seed)
        self.check_ranges(params, "domain.data")
        self.config = params

    def build_tasks(self) -> list[Task]:
        raise NotImplementedError

    def load_split(self, split: str) -> Dataset:
        raise NotImplementedError
