"""NYUv2 (Silberman et al. 2012) as preprocessed by MTAN (Liu et al. 2019): 13-class
segmentation, depth and surface normals at 288×384."""
from __future__ import annotations

from pathlib import Path

from .npy_folder import NpyBenchmark

NYUV2_URL = "https://www.dropbox.com/sh/86nssgwm6hm3vkb/AACrnUQ4GxpdrBbLjb6n-mWNa?dl=0"


class NYUv2(NpyBenchmark):
    """NYUv2, MTAN/LibMTL preprocessed: tasks ``segmentation`` (13 classes), ``depth``, ``normal``.

    Data: the preprocessed NYUv2 of MTAN (Liu, Johns & Davison, CVPR 2019), linked from the MTAN
    README (github.com/lorenmt/mtan) and LibMTL's ``examples/nyu/README.md``::

        <root>/train/{image,label,depth,normal}/<i>.npy   795 samples, i = 0..794
        <root>/val/{image,label,depth,normal}/<i>.npy     654 samples (the benchmark's test set)

    Per sample: ``image`` (288, 384, 3) float in [0, 1] (fed as is, as MTAN and LibMTL do);
    ``label`` (288, 384) float class ids 0..12, −1 = unlabelled (ignored); ``depth``
    (288, 384, 1) metres, 0 = invalid; ``normal`` (288, 384, 3) unit vectors in [−1, 1], all-zero
    = invalid (Eigen & Fergus's precomputed normals).

    Splits: ``test`` is the on-disk ``val/`` (654); ``train`` and ``val`` split the on-disk
    ``train/`` (795) — ``val_fraction`` (0.1: 80 images) chosen by ``data_seed`` — so model
    selection never sees the test images. (MTAN and LibMTL report on ``val/`` with no
    validation split.)

    Augmentation (``augment``, training split only): MTAN/LibMTL's random scale-crop — scale
    from (1.0, 1.2, 1.5), crop ``(H/s, W/s)``, resize back (image bilinear, labels/depth/normals
    nearest, depth ÷ s) — and a horizontal flip with probability ½ that negates the normals'
    x component; draws are a pure function of (seed, epoch, file number)
    (:mod:`.augment`).
    """

    name = "nyuv2"
    image_size = (288, 384)
    num_classes = 13
    expected = ("expected <root>/{train,val}/{image,label,depth,normal}/<i>.npy (i = 0..n-1; "
                "image 288x384x3, label 288x384 with -1 ignore, depth 288x384x1, normal 288x384x3)")
    hint = ("get NYUv2 preprocessed by MTAN (linked from the READMEs of github.com/lorenmt/mtan and "
            f"LibMTL's examples/nyu): {NYUV2_URL}")

    def build_tasks(self):
        from ..tasks.depth import DepthTask
        from ..tasks.normals import NormalTask
        from ..tasks.segmentation import SegmentationTask

        return [SegmentationTask("segmentation", self.num_classes, ignore_index=-1,
                                 pixel_metric=self.config["pixel_metric"]),
                DepthTask("depth"),
                NormalTask("normal")]

    def modalities(self, split_folder: Path) -> dict[str, tuple[str, str]]:
        return {"segmentation": ("label", "segmentation"), "depth": ("depth", "depth"),
                "normal": ("normal", "normals")}
