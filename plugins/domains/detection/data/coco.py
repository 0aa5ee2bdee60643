"""COCO instances (``instances_<set>.json``) with a thin reader of its own (the JSON is plain).

Layout: ``<root>/annotations/instances_<set>.json`` and ``<root>/<set>/<file_name>`` (as the
COCO 2017 zips unpack). Splits: train on ``train_set`` (train2017) minus a seeded
``val_fraction`` held out for validation; test on ``test_set`` (val2017, the split COCO
publishes annotations for). Classes are the JSON's categories sorted by id (80 for COCO), label
``k`` the k-th of them; ``classes``, when given, must equal their names in that order.
``iscrowd`` annotations are crowd regions (left out of training, ignored by COCOeval as in
COCO's own protocol); boxes with no area are dropped, as torchvision's COCO reference does.
"""
from __future__ import annotations

import json
from pathlib import Path

from mtl_platform.errors import UserError
from mtl_platform.params import Param

from .contract import DetectionData, DetectionList, target
from .voc import carve, image_tensor

WHERE = "https://cocodataset.org/#download (2017 Train/Val images and annotations)"


def read_instances(path: Path) -> dict:
    if not path.is_file():
        raise UserError(f"domain.data.root: {str(path)!r} not found; expected <root>/annotations/instances_<set>.json "
                        f"and <root>/<set>/ images; get them from {WHERE}")
    try:
        data = json.loads(path.read_text())
        data["images"], data["annotations"], data["categories"]  # noqa: B018 - the keys must exist
    except (ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{path}: not a COCO instances file ({type(exc).__name__}: {exc})") from None
    return data


class COCO(DetectionData):
    """MS COCO (Lin et al., ECCV 2014) instances from local files."""

    name = "coco"
    params = (
        Param("root", str, "data/coco", "folder holding annotations/ and the image folders"),
        Param("train_set", str, "train2017", "image set trained on"),
        Param("test_set", str, "val2017", "image set tested on"),
        Param("val_fraction", float, 0.01, "training images held out for validation", bounds="(0, 1)"),
        Param("classes", list, None, "expected class names, in category-id order (default: the file's)", item=str,
              optional=True),
        Param("data_seed", int, 0, "seed of the validation carve", bounds="[0, inf)"),
    )

    def __init__(self, seed: int = 0, **params):
        super().__init__(seed, **params)
        self.values = self.set_params(params, "domain.data")
        self._files: dict[str, dict] = {}

    def instances(self, image_set: str) -> dict:
        if image_set not in self._files:
            path = Path(self.values["root"]).expanduser() / "annotations" / f"instances_{image_set}.json"
            self._files[image_set] = read_instances(path)
        return self._files[image_set]

    def classes(self) -> list[str]:
        data = self.instances(self.values["test_set"])
        names = [c["name"] for c in sorted(data["categories"], key=lambda c: c["id"])]
        given = self.values["classes"]
        if given is not None and list(given) != names:
            raise UserError(f"domain.data.classes: {list(given)} differs from the categories of "
                            f"instances_{self.values['test_set']}.json ({names})")
        return names

    def load(self, split: str) -> DetectionList:
        v = self.values
        image_set = v["test_set"] if split == "test" else v["train_set"]
        data = self.instances(image_set)
        ids = [c["id"] for c in sorted(data["categories"], key=lambda c: c["id"])]
        expected = [c["id"] for c in sorted(self.instances(v["test_set"])["categories"], key=lambda c: c["id"])]
        if ids != expected:
            raise UserError(f"domain.data: the categories of instances_{image_set}.json differ from those of "
                            f"instances_{v['test_set']}.json")
        self.classes()
        label = {cid: k + 1 for k, cid in enumerate(ids)}
        per_image: dict[int, list] = {img["id"]: [] for img in data["images"]}
        for ann in data["annotations"]:
            if ann["image_id"] in per_image:
                per_image[ann["image_id"]].append(ann)
        images = sorted(data["images"], key=lambda img: img["id"])
        if split != "test":
            train, val = carve(len(images), v["val_fraction"], v["data_seed"])
            images = [images[i] for i in (train if split == "train" else val)]
        folder = Path(v["root"]).expanduser() / image_set

        def read(i: int):
            from PIL import Image

            info = images[i]
            path = folder / info["file_name"]
            if not path.is_file():
                raise UserError(f"domain.data.root: image {str(path)!r} of instances_{image_set}.json not found; "
                                f"get the images from {WHERE}")
            boxes, labels, crowd = [], [], []
            for ann in per_image[info["id"]]:
                x, y, w, h = (float(c) for c in ann["bbox"])
                if w <= 0 or h <= 0:
                    continue
                if ann["category_id"] not in label:
                    raise UserError(f"{image_set}: annotation {ann.get('id')} has category {ann['category_id']}, "
                                    f"not among the file's categories")
                boxes.append([x, y, x + w, y + h])
                labels.append(label[ann["category_id"]])
                crowd.append(int(ann.get("iscrowd", 0)))
            with Image.open(path) as im:
                return image_tensor(im), target(boxes, labels, crowd)

        return DetectionList(len(images), read, train=split == "train")
