"""Pascal VOC detection through torchvision's reader (``VOCDetection(download=False)``).

Layout: ``<root>/VOCdevkit/VOC<year>/{Annotations,ImageSets/Main,JPEGImages}`` as the VOC tarballs
unpack. The benchmark setting of spec gradients.md §1.12: train on VOC 2007 ``trainval``, test on
VOC 2007 ``test`` (20 classes, :data:`VOC_CLASSES`). Validation is carved from the training
images (``val_fraction``, seeded by ``data_seed``), never from test.

Boxes: VOC's 1-based inclusive pixel corners become ``[xmin − 1, ymin − 1, xmax, ymax]``.
Objects marked ``difficult`` are left out of training and are COCO crowd regions in evaluation
(neither a hit nor a miss; VOC's own rule ignores them likewise). Boxes with no area are dropped,
as torchvision's COCO reference drops them.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from mtl_platform.errors import UserError
from mtl_platform.params import Param

from .contract import DetectionData, DetectionList, target

VOC_CLASSES = ["aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
               "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
               "tvmonitor"]
WHERE = "http://host.robots.ox.ac.uk/pascal/VOC/ (VOCtrainval_06-Nov-2007.tar and VOCtest_06-Nov-2007.tar)"


def carve(n: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(train, val) indices of ``range(n)``: a seeded ``fraction`` held out for validation."""
    order = np.random.default_rng(seed).permutation(n)
    k = int(round(fraction * n)) if fraction > 0 else 0
    return sorted(order[k:].tolist()), sorted(order[:k].tolist())


def image_tensor(pil) -> torch.Tensor:
    array = np.asarray(pil.convert("RGB"), dtype=np.uint8)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).float() / 255


def voc_target(annotation: dict, classes: list[str], where: str) -> dict:
    """The boxes, labels and crowd flags of one parsed VOC XML (``VOCDetection``'s dict)."""
    objects = annotation["annotation"].get("object", [])
    if isinstance(objects, dict):
        objects = [objects]
    boxes, labels, crowd = [], [], []
    for obj in objects:
        name = obj["name"].strip()
        if name not in classes:
            raise UserError(f"{where}: object class {name!r} is not in domain.data.classes "
                            f"({', '.join(classes)})")
        b = obj["bndbox"]
        x1, y1, x2, y2 = float(b["xmin"]) - 1, float(b["ymin"]) - 1, float(b["xmax"]), float(b["ymax"])
        if x2 <= x1 or y2 <= y1:
            continue
        boxes.append([x1, y1, x2, y2])
        labels.append(classes.index(name) + 1)
        crowd.append(int(str(obj.get("difficult", "0")).strip() == "1"))
    return target(boxes, labels, crowd)


class VOC(DetectionData):
    """Pascal VOC (Everingham et al., IJCV 2010) from local files, read by torchvision."""

    name = "voc"
    params = (
        Param("root", str, "data/voc", "folder holding VOCdevkit/"),
        Param("year", str, "2007", "VOC year of the training images", choices=("2007", "2012")),
        Param("train_set", str, "trainval", "image set trained on", choices=("train", "trainval")),
        Param("test_set", str, "test", "image set tested on (VOC 2007 test)", choices=("val", "test")),
        Param("val_fraction", float, 0.1, "training images held out for validation", bounds="(0, 1)"),
        Param("classes", list, None, "class names, in label order (default: the 20 VOC classes)", item=str,
              optional=True),
        Param("data_seed", int, 0, "seed of the validation carve", bounds="[0, inf)"),
    )

    def __init__(self, seed: int = 0, **params):
        super().__init__(seed, **params)
        self.values = self.set_params(params, "domain.data")

    def classes(self) -> list[str]:
        return list(self.values["classes"] or VOC_CLASSES)

    def _reader(self, year: str, image_set: str):
        from torchvision.datasets import VOCDetection

        root = Path(self.values["root"]).expanduser()
        base = root / "VOCdevkit" / f"VOC{year}"
        listing = base / "ImageSets" / "Main" / f"{image_set}.txt"
        for path in (base / "Annotations", base / "JPEGImages", listing):
            if not path.exists():
                raise UserError(f"domain.data.root: {str(path)!r} not found (VOC {year} {image_set}); expected "
                                f"<root>/VOCdevkit/VOC{year}/{{Annotations,ImageSets/Main,JPEGImages}}; get it from "
                                f"{WHERE}")
        return VOCDetection(str(root), year=year, image_set=image_set, download=False)

    def load(self, split: str) -> DetectionList:
        v = self.values
        classes = self.classes()
        if split == "test":
            reader = self._reader("2007", v["test_set"])
            indices = list(range(len(reader)))
        else:
            reader = self._reader(v["year"], v["train_set"])
            train, val = carve(len(reader), v["val_fraction"], v["data_seed"])
            indices = train if split == "train" else val

        def read(i: int):
            k = indices[i]
            image, annotation = reader[k]
            return image_tensor(image), voc_target(annotation, classes, reader.annotations[k])

        return DetectionList(len(indices), read, train=split == "train")
