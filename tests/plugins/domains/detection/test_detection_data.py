"""The detection data (issue 21): digit scenes are a pure function of the seed with exact boxes
and splits disjoint in source digits; a VOCdevkit tree and a COCO instances file, written here in
each exact format, load to the right boxes and labels; a missing path is one clear line."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from mtl_platform.errors import UserError
from mtl_platform_plugins.domains.detection.data.coco import COCO
from mtl_platform_plugins.domains.detection.data.digits import INK, DigitScenes, digit_pools
from mtl_platform_plugins.domains.detection.data.voc import VOC


def test_digit_scenes_are_a_pure_function_of_the_seed_with_exact_boxes():
    a = DigitScenes(train_scenes=4, image_size=64).load("train")
    b = DigitScenes(train_scenes=4, image_size=64).load("train")
    other = DigitScenes(train_scenes=4, image_size=64, data_seed=1).load("train")
    (xa, ya), (xb, yb), (xo, _) = (d.get_batch(torch.arange(4)) for d in (a, b, other))
    assert all(torch.equal(p, q) for p, q in zip(xa, xb))
    assert all(torch.equal(p["boxes"], q["boxes"]) for p, q in zip(ya, yb))
    assert not all(torch.equal(p, q) for p, q in zip(xa, xo))
    for image, t in zip(xa, ya):
        assert image.shape == (3, 64, 64) and 0 <= image.min() and image.max() <= 1
        assert 1 <= len(t["labels"]) <= 4 and t["labels"].min() >= 1 and t["labels"].max() <= 10
        assert (t["boxes"][:, 2:] > t["boxes"][:, :2]).all() and t["boxes"].max() <= 64


def test_digit_boxes_are_the_tight_box_of_the_pasted_ink():
    from mtl_platform_plugins.domains.detection.data.digits import make_scene

    photos = [torch.zeros(3, 80, 80)]  # a black photograph: the ink is what differs from it
    digits = torch.zeros(1, 28, 28)
    digits[0, 5:20, 9:14] = 1.0  # a bar: rows 5..19, columns 9..13 of the 28 x 28 digit
    g = torch.Generator().manual_seed(3)
    image, boxes, labels = make_scene(g, 56, photos, digits, np.array([7]), np.array([0]), 1, (0.5, 0.5))
    assert labels == [8]
    ink = torch.nonzero(image.float().amax(0) / 255 > INK)
    y0, x0 = ink.min(0).values.tolist()
    y1, x1 = (ink.max(0).values + 1).tolist()
    assert boxes == [[x0, y0, x1, y1]]


def test_the_splits_use_disjoint_source_digits():
    labels = np.repeat(np.arange(10), 50)
    pools = digit_pools(labels, 0)
    assert not set(pools["train"]) & set(pools["test"]) and not set(pools["val"]) & set(pools["test"])
    assert not set(pools["train"]) & set(pools["val"])
    assert len(pools["train"]) + len(pools["val"]) + len(pools["test"]) == 500
    assert all(np.isin(np.arange(10), labels[p]).all() for p in pools.values())


VOC_XML = """<annotation><filename>{name}.jpg</filename><size><width>64</width><height>48</height><depth>3</depth></size>
{objects}</annotation>"""
OBJECT = ("<object><name>{cls}</name><difficult>{hard}</difficult><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin>"
          "<xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>")


def voc_tree(root, year="2007"):
    base = root / "VOCdevkit" / f"VOC{year}"
    for sub in ("Annotations", "ImageSets/Main", "JPEGImages"):
        (base / sub).mkdir(parents=True)
    images = {"000001": [("dog", 0, (10, 5, 30, 25)), ("person", 1, (1, 1, 64, 48))],
              "000002": [("car", 0, (3, 4, 9, 12))], "000003": [("cat", 0, (5, 5, 20, 20))]}
    for name, objects in images.items():
        Image.new("RGB", (64, 48), (120, 30, 200)).save(base / "JPEGImages" / f"{name}.jpg")
        body = "".join(OBJECT.format(cls=c, hard=h, b=b) for c, h, b in objects)
        (base / "Annotations" / f"{name}.xml").write_text(VOC_XML.format(name=name, objects=body))
    (base / "ImageSets/Main/trainval.txt").write_text("000001\n000002\n")
    (base / "ImageSets/Main/test.txt").write_text("000003\n000001\n")
    return root


def test_a_vocdevkit_tree_loads_to_the_right_boxes_and_labels(tmp_path):
    voc = VOC(root=str(voc_tree(tmp_path)), val_fraction=0.4)
    classes = voc.classes()
    test = voc.load("test")
    assert len(test) == 2
    image, t = test[1]
    assert image.shape == (3, 48, 64)
    torch.testing.assert_close(t["boxes"], torch.tensor([[9.0, 4.0, 30.0, 25.0], [0.0, 0.0, 64.0, 48.0]]))
    assert t["labels"].tolist() == [classes.index("dog") + 1, classes.index("person") + 1]
    assert t["iscrowd"].tolist() == [0, 1]  # difficult: ignored by evaluation
    train, val = voc.load("train"), voc.load("val")
    assert len(train) + len(val) == 2 and len(val) == 1
    everything = [voc.load(s).get_batch(torch.arange(len(voc.load(s))))[1] for s in ("train", "val")]
    trained = [t for batch in everything[:1] for t in batch]
    assert all("iscrowd" not in t for t in trained)  # training targets carry no difficult objects
    labelled = sorted(int(x) for batch in everything for t in batch
                      for x, crowd in zip(t["labels"], t.get("iscrowd", torch.zeros(len(t["labels"])))) if not crowd)
    assert labelled == sorted([classes.index("dog") + 1, classes.index("car") + 1])


def test_voc_refuses_a_missing_tree_and_an_unknown_class_in_one_line(tmp_path):
    with pytest.raises(UserError, match=r"VOCdevkit/VOC2007/Annotations.*not found.*host.robots.ox.ac.uk"):
        VOC(root=str(tmp_path / "nowhere")).load("train")
    voc = VOC(root=str(voc_tree(tmp_path)), classes=["dog", "person", "cat"])
    with pytest.raises(UserError, match=r"object class 'car' is not in domain.data.classes"):
        data = voc.load("train")
        data.get_batch(torch.arange(len(data)))
        voc.load("val").get_batch(torch.arange(1))


def coco_files(root):
    (root / "annotations").mkdir(parents=True)
    for split, names in (("train2017", ["a.jpg", "b.jpg", "c.jpg"]), ("val2017", ["d.jpg"])):
        (root / split).mkdir()
        for n in names:
            Image.new("RGB", (40, 30), (0, 90, 10)).save(root / split / n)
    categories = [{"id": 1, "name": "person"}, {"id": 3, "name": "car"}, {"id": 18, "name": "dog"}]
    val = {"images": [{"id": 7, "file_name": "d.jpg", "width": 40, "height": 30}],
           "annotations": [{"id": 1, "image_id": 7, "category_id": 18, "bbox": [2, 3, 10, 5], "iscrowd": 0},
                           {"id": 2, "image_id": 7, "category_id": 3, "bbox": [0, 0, 40, 30], "iscrowd": 1},
                           {"id": 3, "image_id": 7, "category_id": 1, "bbox": [5, 5, 0, 4], "iscrowd": 0}],
           "categories": categories}
    train = {"images": [{"id": i, "file_name": n, "width": 40, "height": 30}
                        for i, n in enumerate(["a.jpg", "b.jpg", "c.jpg"], start=1)],
             "annotations": [{"id": 9, "image_id": 2, "category_id": 1, "bbox": [1, 1, 4, 4], "iscrowd": 0}],
             "categories": categories}
    (root / "annotations" / "instances_val2017.json").write_text(json.dumps(val))
    (root / "annotations" / "instances_train2017.json").write_text(json.dumps(train))
    return root


def test_a_coco_instances_file_loads_to_the_right_boxes_and_labels(tmp_path):
    coco = COCO(root=str(coco_files(tmp_path)), val_fraction=0.34)
    assert coco.classes() == ["person", "car", "dog"]  # by category id; ids 1, 3, 18 -> labels 1, 2, 3
    image, t = coco.load("test")[0]
    assert image.shape == (3, 30, 40)
    torch.testing.assert_close(t["boxes"], torch.tensor([[2.0, 3.0, 12.0, 8.0], [0.0, 0.0, 40.0, 30.0]]))
    assert t["labels"].tolist() == [3, 2] and t["iscrowd"].tolist() == [0, 1]  # the zero-width box is dropped
    train, val = coco.load("train"), coco.load("val")
    assert len(train) == 2 and len(val) == 1
    _, targets = train.get_batch(torch.arange(2))
    _, held = val.get_batch(torch.arange(1))
    assert sorted(len(x["labels"]) for x in targets + held) == [0, 0, 1]


def test_coco_refuses_a_missing_file_and_a_class_list_mismatch_in_one_line(tmp_path):
    with pytest.raises(UserError, match=r"annotations/instances_val2017.json' not found.*cocodataset.org"):
        COCO(root=str(tmp_path / "nowhere")).classes()
    with pytest.raises(UserError, match=r"domain.data.classes: .* differs from the categories"):
        COCO(root=str(coco_files(tmp_path)), classes=["person", "dog", "car"]).classes()
