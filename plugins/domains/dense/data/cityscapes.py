"""CityScapes (Cordts et al. 2016) as preprocessed by MTAN (Liu et al. 2019): 7- or 19-class
segmentation and inverse depth at 128×256."""
from __future__ import annotations

from pathlib import Path

from mtl_platform.errors import UserError
from mtl_platform.params import Param

from ._common import ROOT_KEY
from .npy_folder import NpyBenchmark

CITYSCAPES_URL = "https://www.dropbox.com/sh/gaw6vh6qusoyms6/AADwWi0Tp3E3M4B2xzeGlsEna?dl=0"

#: label folders of each class count, in the order they are looked for: MTAN's release names
#: them label_2 / label_7 / label_19; LibMTL's copy has the 7-class labels in ``label``
LABEL_FOLDERS = {7: ("label_7", "label"), 19: ("label_19",)}


class CityScapes(NpyBenchmark):
    """CityScapes, MTAN/LibMTL preprocessed: tasks ``segmentation`` (7 or 19 classes), ``depth``.

    Data: the preprocessed CityScapes of MTAN (Liu, Johns & Davison, CVPR 2019), 128×256
    version, linked from the MTAN README (github.com/lorenmt/mtan) and LibMTL's
    ``examples/cityscapes/README.md``::

        <root>/train/{image,label_7,label_19,depth}/<i>.npy   2975 samples
        <root>/val/{image,label_7,label_19,depth}/<i>.npy     500 samples (the benchmark's test set)

    (MTAN's release also has ``label_2``; LibMTL's copy names the 7-class folder ``label``, which
    is accepted for ``classes: 7``.) Per sample: ``image`` (128, 256, 3) float in [0, 1];
    ``label_7``/``label_19`` (128, 256) float class ids, −1 = ignored; ``depth`` (128, 256, 1)
    *inverse* depth (disparity), 0 = invalid. MTAN's 256×512 release in the same layout loads
    too (``image_size`` follows the files).

    Splits: ``test`` is the on-disk ``val/`` (500); ``train`` and ``val`` split the on-disk
    ``train/`` — ``val_fraction`` (0.1: 298 images) chosen by ``data_seed``.

    Augmentation (``augment``, training split only): the NYUv2 recipe of MTAN/LibMTL — scale
    from (1.0, 1.2, 1.5), crop ``(H/s, W/s)``, resize back (image bilinear, labels and depth
    nearest), horizontal flip with probability ½ — with the inverse depth *multiplied* by s
    (zooming in by s brings the scene s times closer), as Auto-Lambda does; the original MTAN
    and LibMTL CityScapes loaders do not augment.
    """

    name = "cityscapes"
    image_size = (128, 256)
    params = NpyBenchmark.params + (
        Param("classes", int, 7, "segmentation classes: 7 (label_7, or LibMTL's label) or 19 (label_19)",
              choices=(7, 19)),
    )
    expected = ("expected <root>/{train,val}/{image,label_7 (or label; label_19 for classes: 19),depth}/<i>.npy "
                "(i = 0..n-1; image 128x256x3, label 128x256 with -1 ignore, depth 128x256x1)")
    hint = ("get CityScapes preprocessed by MTAN (128x256, linked from the READMEs of github.com/lorenmt/mtan "
            f"and LibMTL's examples/cityscapes): {CITYSCAPES_URL}")

    @property
    def num_classes(self) -> int:
        return int(self.config["classes"])

    def build_tasks(self):
        from ..tasks.depth import DepthTask
        from ..tasks.segmentation import SegmentationTask

        return [SegmentationTask("segmentation", self.num_classes, ignore_index=-1,
                                 pixel_metric=self.config["pixel_metric"]),
                DepthTask("depth")]

    def label_folder(self, split_folder: Path) -> str:
        """The first of :data:`LABEL_FOLDERS` for ``classes`` that ``split_folder`` has."""
        candidates = LABEL_FOLDERS.get(self.num_classes)
        if candidates is None:
            raise UserError(f"domain.data.classes: got {self.num_classes}, allowed: 7, 19")
        for name in candidates:
            if (split_folder / name).is_dir():
                return name
        raise UserError(f"{ROOT_KEY}: no {' or '.join(candidates)} folder in {split_folder} "
                        f"(domain.data.classes: {self.num_classes}); {self.expected}; {self.hint}")

    def modalities(self, split_folder: Path) -> dict[str, tuple[str, str]]:
        return {"segmentation": (self.label_folder(split_folder), "segmentation"),
                "depth": ("depth", "disparity")}
