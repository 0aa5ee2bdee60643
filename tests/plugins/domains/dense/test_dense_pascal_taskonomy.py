"""PASCAL-Context (ASTMT's PASCAL_MT) and Taskonomy (Standley et al.'s layout) loaders, on tiny
fixture trees written in the real on-disk formats: JPEG/PNG images, palette PNG label maps,
PASCAL-Part ``.mat`` structs, PASCAL-Context ``LabelMap`` ``.mat`` files, uint16 PNGs."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from mtl_platform.errors import UserError
from mtl_platform_plugins.domains.dense.data.augment import sample_seed
from mtl_platform_plugins.domains.dense.data.pascal_context import NORMAL_VALID_CLASSES, PascalContext
from mtl_platform_plugins.domains.dense.data.taskonomy import Taskonomy

pytestmark = pytest.mark.usefixtures("one_thread")

H, W = 20, 24
TRAIN_IDS = [f"2008_{i:06d}" for i in range(1, 11)]
VAL_IDS = [f"2010_{i:06d}" for i in range(1, 5)]
VALID_CLASS = 11  # "floor": a class whose distilled normals ASTMT keeps
INVALID_CLASS = 2  # "aeroplane": not an NYUv2 class
assert VALID_CLASS in NORMAL_VALID_CLASSES and INVALID_CLASS not in NORMAL_VALID_CLASSES


# ---------------------------------------------------------------------------------------------
# PASCAL_MT fixture
# ---------------------------------------------------------------------------------------------

def _palette_png(path, arr):
    im = Image.fromarray(arr.astype(np.uint8), mode="P")
    im.putpalette([v for i in range(256) for v in (i, (7 * i) % 256, (13 * i) % 256)])
    im.save(path)


def _parts(items):
    a = np.empty((1, len(items)), dtype=[("part_name", "O"), ("mask", "O")])
    for k, (name, mask) in enumerate(items):
        a[0, k] = (name, mask.astype(np.uint8))
    return a


def _part_mat(path, objects):
    """A PASCAL-Part annotation: anno (imname, objects (class, class_ind, mask, parts))."""
    import scipy.io

    dtype = [("class", "O"), ("class_ind", "O"), ("mask", "O"), ("parts", "O")]
    objs = np.empty((1, len(objects)), dtype=dtype)
    for k, (cls, ind, mask, parts) in enumerate(objects):
        objs[0, k] = (cls, np.array([[ind]], dtype=np.uint8), mask.astype(np.uint8),
                      _parts(parts) if parts else np.zeros((0, 0)))
    anno = np.empty((1, 1), dtype=[("imname", "O"), ("objects", "O")])
    anno[0, 0] = (path.stem, objs)
    scipy.io.savemat(str(path), {"anno": anno})


def _band(rows):
    m = np.zeros((H, W), dtype=bool)
    m[rows] = True
    return m


def person_target():
    """The human-parts map the person of :func:`_part_mat` fixtures should give."""
    t = np.zeros((H, W), dtype=np.int64)
    t[0:3] = 1  # hair → head group
    t[3:6] = 2  # torso
    t[6:8] = 4  # lhand
    t[8:10] = 6  # rfoot
    return t


def make_pascal(root):
    import scipy.io

    rng = np.random.default_rng(0)
    for sub in ("JPEGImages", "ImageSets/Context", "semseg/VOC12", "semseg/pascal-context", "human_parts",
                "sal_distill", "normals_distill", "pascal-context/trainval"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / "ImageSets/Context/train.txt").write_text("\n".join(TRAIN_IDS) + "\n")
    (root / "ImageSets/Context/val.txt").write_text("\n".join(VAL_IDS) + "\n")
    person = [("hair", _band(slice(0, 3))), ("torso", _band(slice(3, 6))), ("lhand", _band(slice(6, 8))),
              ("rfoot", _band(slice(8, 10)))]
    for n, image_id in enumerate(TRAIN_IDS + VAL_IDS):
        Image.fromarray(rng.integers(0, 256, (H, W, 3), dtype=np.uint8)).save(
            root / "JPEGImages" / f"{image_id}.jpg", quality=95)
        seg = (np.arange(H * W).reshape(H, W) + n) % 21
        seg[:, -2:] = 255
        # VOC12 wins over pascal-context where both exist (even ids); odd ids only have the latter
        if n % 2 == 0:
            _palette_png(root / "semseg/VOC12" / f"{image_id}.png", seg)
            _palette_png(root / "semseg/pascal-context" / f"{image_id}.png", np.zeros((H, W)))
        else:
            _palette_png(root / "semseg/pascal-context" / f"{image_id}.png", seg)
        whole = np.ones((H, W), dtype=bool)
        if n % 3 == 0:  # a person with parts (and a dog)
            objects = [("dog", 12, whole, []), ("person", 15, whole, person)]
        elif n % 3 == 1:  # no person
            objects = [("dog", 12, whole, [])]
        else:  # a person without part annotations
            objects = [("person", 15, whole, [])]
        _part_mat(root / "human_parts" / f"{image_id}.mat", objects)
        sal = (np.arange(H * W).reshape(H, W) * 7 + n) % 256
        sal[0, :4] = (127, 128, 255, 0)
        Image.fromarray(sal.astype(np.uint8), mode="L").save(root / "sal_distill" / f"{image_id}.png")
        normals = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
        Image.fromarray(normals).save(root / "normals_distill" / f"{image_id}.png")
        label_map = np.full((H, W), VALID_CLASS, dtype=np.uint16)
        label_map[:, :5] = INVALID_CLASS
        scipy.io.savemat(str(root / "pascal-context/trainval" / f"{image_id}.mat"), {"LabelMap": label_map})
    return root


@pytest.fixture(scope="module")
def pascal_root(tmp_path_factory):
    return make_pascal(tmp_path_factory.mktemp("pascal") / "PASCAL_MT")


def pascal(root, **params):
    return PascalContext(seed=params.pop("seed", 0), root=str(root), **params)


def test_pascal_samples_shapes_dtypes_and_ranges(pascal_root):
    data = pascal(pascal_root, image_size=[16, 12])
    assert data.image_size == (16, 12)
    for split in ("train", "val", "test"):
        ds = data.load_split(split)
        image, targets = ds[0]
        assert image.dtype == torch.float32 and image.shape == (3, 16, 12)
        assert set(targets) == {"semseg", "human_parts", "saliency", "normals"}
        for task in ("semseg", "human_parts", "saliency"):
            assert targets[task].dtype == torch.int64 and targets[task].shape == (16, 12)
        assert targets["normals"].dtype == torch.float32 and targets["normals"].shape == (3, 16, 12)
        assert set(targets["semseg"].unique().tolist()) <= set(range(-1, 21))
        assert set(targets["human_parts"].unique().tolist()) <= set(range(-1, 7))
        assert set(targets["saliency"].unique().tolist()) <= {-1, 0, 1}
        norm = targets["normals"].norm(dim=0)
        assert torch.all(((norm - 1).abs() < 1e-5) | (norm == 0))
    batch = torch.utils.data.default_collate([ds[i] for i in range(len(ds))])
    assert batch[0].shape == (len(ds), 3, 16, 12)


def test_pascal_encodings_at_native_size(pascal_root):
    ds = pascal(pascal_root, image_size=[H, W], augment=False).load_split("test")
    assert ds.names == VAL_IDS
    for n, image_id in enumerate(VAL_IDS):
        k = len(TRAIN_IDS) + n  # the fixture's running number of this image
        image, t = ds[n]
        rgb = np.array(Image.open(pascal_root / "JPEGImages" / f"{image_id}.jpg").convert("RGB"))
        mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
        expected = (torch.from_numpy(rgb).permute(2, 0, 1).float() / 255 - mean.view(3, 1, 1)) / std.view(3, 1, 1)
        assert torch.allclose(image, expected, atol=1e-5)
        # semseg: the VOC12 map when present, 255 → −1
        seg = (np.arange(H * W).reshape(H, W) + k) % 21
        seg[:, -2:] = -1
        assert torch.equal(t["semseg"], torch.from_numpy(seg))
        # human parts: person with parts → grouped parts over background; otherwise all ignored
        if k % 3 == 0:
            assert torch.equal(t["human_parts"], torch.from_numpy(person_target()))
        else:
            assert torch.all(t["human_parts"] == -1)
        # saliency: value / 255 > 0.5, no ignore value
        assert t["saliency"][0, :4].tolist() == [0, 1, 1, 0]
        sal = (np.arange(H * W).reshape(H, W) * 7 + k) % 256
        assert torch.equal(t["saliency"][1:], torch.from_numpy((sal[1:] > 127).astype(np.int64)))
        # normals: 2v/255 − 1 normalised where the LabelMap class is kept, zero elsewhere
        raw = np.array(Image.open(pascal_root / "normals_distill" / f"{image_id}.png")).astype(np.float64)
        dec = torch.from_numpy(2 * raw / 255 - 1).permute(2, 0, 1).float()
        dec = dec / dec.norm(dim=0, keepdim=True)
        assert torch.all(t["normals"][:, :, :5] == 0)
        assert torch.allclose(t["normals"][:, :, 5:], dec[:, :, 5:], atol=1e-5)


def test_pascal_human_parts_ignored_without_people(pascal_root):
    ds = pascal(pascal_root, image_size=[8, 8], augment=False).load_split("train")
    seen = set()
    for i, image_id in enumerate(ds.names):
        k = TRAIN_IDS.index(image_id)
        parts = ds[i][1]["human_parts"]
        if k % 3 == 0:
            assert (parts >= 0).all() and parts.max() > 0
            seen.add("person")
        else:
            assert torch.all(parts == -1)
            seen.add("none")
    assert seen == {"person", "none"}


def test_pascal_splits(pascal_root):
    data = pascal(pascal_root, val_fraction=0.3, data_seed=1)
    train, val, test = (data.load_split(s).names for s in ("train", "val", "test"))
    assert len(val) == 3 and len(train) == 7
    assert not set(train) & set(val)
    assert sorted(train + val) == sorted(TRAIN_IDS)
    assert test == VAL_IDS  # the official val list is the test split
    assert pascal(pascal_root, val_fraction=0.3, data_seed=1).load_split("val").names == val
    others = {tuple(pascal(pascal_root, val_fraction=0.3, data_seed=s).load_split("val").names) for s in range(2, 8)}
    assert len(others | {tuple(val)}) > 1
    assert pascal(pascal_root, val_fraction=0.0).load_split("val").names == []


def _equal(a, b):
    return torch.equal(a[0], b[0]) and all(torch.equal(a[1][k], b[1][k]) for k in a[1])


def test_pascal_augmentation_is_a_function_of_seed_epoch_index(pascal_root):
    ds = pascal(pascal_root, image_size=[12, 16], seed=3).load_split("train")
    assert ds.augment
    first = [ds[i] for i in range(4)]
    assert all(_equal(first[i], ds[i]) for i in range(4))
    again = pascal(pascal_root, image_size=[12, 16], seed=3).load_split("train")
    assert all(_equal(first[i], again[i]) for i in range(4))
    ds.set_epoch(1)
    assert not all(_equal(first[i], ds[i]) for i in range(4))
    ds.set_epoch(0)
    assert all(_equal(first[i], ds[i]) for i in range(4))
    other_seed = pascal(pascal_root, image_size=[12, 16], seed=4).load_split("train")
    assert not all(_equal(first[i], other_seed[i]) for i in range(4))
    plain = pascal(pascal_root, image_size=[12, 16], seed=3, augment=False).load_split("train")
    assert not all(_equal(first[i], plain[i]) for i in range(4))
    for epoch in range(3):  # scale-crop/pad keeps the size, the label sets and unit-or-zero normals
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            image, t = ds[i]
            assert image.shape == (3, 12, 16) and t["semseg"].shape == (12, 16)
            assert set(t["saliency"].unique().tolist()) <= {-1, 0, 1}
            norm = t["normals"].norm(dim=0)
            assert torch.all(((norm - 1).abs() < 1e-5) | (norm == 0))
    # the per-sample seed is plain integer arithmetic of (seed, epoch, index)
    assert sample_seed(3, 0, 1) == sample_seed(3, 0, 1) != sample_seed(3, 1, 0)
    assert 0 <= sample_seed(2**70, 5, 7) < 2**63


def test_pascal_val_and_test_are_not_augmented(pascal_root):
    on = pascal(pascal_root, image_size=[12, 16], augment=True)
    off = pascal(pascal_root, image_size=[12, 16], augment=False)
    for split in ("val", "test"):
        a, b = on.load_split(split), off.load_split(split)
        assert not a.augment
        a.set_epoch(5)
        assert all(_equal(a[i], b[i]) for i in range(len(a)))


def test_pascal_missing_data_is_a_user_error(pascal_root, tmp_path):
    with pytest.raises(UserError, match=r"^domain\.data\.root: no folder .*nowhere.*PASCAL_MT\.tgz"):
        pascal(tmp_path / "nowhere").load_split("train")
    with pytest.raises(UserError, match=r"domain\.data\.root: not set"):
        PascalContext(seed=0).load_split("train")
    broken = make_pascal(tmp_path / "broken")
    (broken / "sal_distill" / f"{TRAIN_IDS[2]}.png").unlink()
    with pytest.raises(UserError, match=r"domain\.data\.root: 1 of .* missing, first .*sal_distill"):
        pascal(broken).load_split("train")
    import shutil

    shutil.rmtree(broken / "normals_distill")
    with pytest.raises(UserError, match=r"domain\.data\.root: no folder .*normals_distill"):
        pascal(broken).load_split("test")
    (broken / "ImageSets/Context/val.txt").unlink()
    with pytest.raises(UserError, match=r"domain\.data\.root: no split list .*val\.txt"):
        pascal(broken).load_split("test")
    with pytest.raises(UserError, match="domain.data.image_size"):
        pascal(pascal_root, image_size=[4])
    with pytest.raises(UserError, match="domain.data.val_fraction"):
        pascal(pascal_root, val_fraction=1.0).load_split("val")
    message = ""
    try:
        pascal(tmp_path / "nowhere").load_split("test")
    except UserError as exc:
        message = str(exc)
    assert "\n" not in message and "JPEGImages" in message


def test_pascal_tasks():
    pytest.importorskip("mtl_platform_plugins.domains.dense.tasks.segmentation")
    pytest.importorskip("mtl_platform_plugins.domains.dense.tasks.saliency")
    pytest.importorskip("mtl_platform_plugins.domains.dense.tasks.normals")
    tasks = PascalContext(seed=0, root="unused").build_tasks()
    assert [t.name for t in tasks] == ["semseg", "human_parts", "saliency", "normals"]
    assert tasks[0].num_classes == 21 and tasks[1].num_classes == 7
    assert tasks[0].ignore_index == -1 and tasks[2].ignore_index == -1
    assert tasks[3].spread == "rmse"


# ---------------------------------------------------------------------------------------------
# Taskonomy fixture
# ---------------------------------------------------------------------------------------------

VIEWS = [(0, 0), (0, 1), (1, 0), (2, 3), (10, 0)]
DOMAINS = ("rgb", "segment_semantic", "depth_zbuffer", "keypoints2d", "edge_texture", "normal")


def _stem(point, view):
    return f"point_{point}_view_{view}"


def depth_raw(n):
    d = (np.arange(H * W).reshape(H, W) * 37 + 1000 * n + 500) % 60000
    d[0, :3] = (65535, 64500, 64499)
    return d.astype(np.uint16)


def make_taskonomy(root, buildings=("allensville", "onaga"), nested=False, mask_for=()):
    rng = np.random.default_rng(1)
    for b, building in enumerate(buildings):
        for n, (point, view) in enumerate(VIEWS):
            k = 10 * b + n
            stem = _stem(point, view)
            arrays = {
                "rgb": rng.integers(0, 256, (H, W, 3), dtype=np.uint8),
                "segment_semantic": ((np.arange(H * W).reshape(H, W) + k) % 19).astype(np.uint8),
                "depth_zbuffer": depth_raw(k),
                "keypoints2d": ((np.arange(H * W).reshape(H, W) * 101 + k) % 65536).astype(np.uint16),
                "edge_texture": ((np.arange(H * W).reshape(H, W) * 211 + k) % 65536).astype(np.uint16),
                "normal": rng.integers(0, 256, (H, W, 3), dtype=np.uint8),
            }
            for domain in DOMAINS + (("mask",) if building in mask_for else ()):
                folder = root / domain / ("taskonomy" if nested else "") / building
                folder.mkdir(parents=True, exist_ok=True)
                if domain == "mask":
                    m = np.full((H, W), 255, dtype=np.uint8)
                    m[:, :4] = 0
                    Image.fromarray(m, mode="L").save(folder / f"{stem}_domain_mask.png")
                else:
                    Image.fromarray(arrays[domain]).save(folder / f"{stem}_domain_{domain}.png")
    return root


@pytest.fixture(scope="module")
def taskonomy_root(tmp_path_factory):
    return make_taskonomy(tmp_path_factory.mktemp("taskonomy"))


def taskonomy(root, **params):
    params.setdefault("buildings", ["allensville", "onaga"])
    return Taskonomy(seed=params.pop("seed", 0), root=str(root), **params)


def _all_records(buildings=("allensville", "onaga")):
    return [f"{b}/{_stem(p, v)}" for b in buildings for p, v in VIEWS]


def test_taskonomy_fixture_pngs_are_16_bit(taskonomy_root):
    with Image.open(taskonomy_root / "depth_zbuffer/onaga" / "point_0_view_0_domain_depth_zbuffer.png") as im:
        assert im.mode.startswith("I")
        assert int(np.array(im).max()) == 65535


def test_taskonomy_samples_shapes_dtypes(taskonomy_root):
    data = taskonomy(taskonomy_root, image_size=[8, 12])
    for split in ("train", "val", "test"):
        ds = data.load_split(split)
        assert len(ds) > 0
        image, t = ds[0]
        assert image.dtype == torch.float32 and image.shape == (3, 8, 12)
        assert set(t) == {"segment_semantic", "depth_zbuffer", "keypoints2d", "edge_texture", "normal"}
        assert t["segment_semantic"].dtype == torch.int64 and t["segment_semantic"].shape == (8, 12)
        for task in ("depth_zbuffer", "keypoints2d", "edge_texture"):
            assert t[task].dtype == torch.float32 and t[task].shape == (1, 8, 12)
        assert t["normal"].dtype == torch.float32 and t["normal"].shape == (3, 8, 12)
        assert t["depth_zbuffer"].min() >= 0


def test_taskonomy_encodings_at_native_size(taskonomy_root):
    data = taskonomy(taskonomy_root, image_size=[H, W], augment=False, test_buildings=["onaga"])
    ds = data.load_split("test")
    assert ds.names == _all_records(("onaga",))
    unit = taskonomy(taskonomy_root, image_size=[H, W], test_buildings=["onaga"],
                     keypoint_edge_scaling="unit").load_split("test")
    for n in range(len(ds)):
        k = 10 + n
        _, t = ds[n]
        seg = (np.arange(H * W).reshape(H, W) + k) % 19
        expected = np.where((seg >= 1) & (seg <= 17), seg - 1, -1)
        assert torch.equal(t["segment_semantic"], torch.from_numpy(expected))
        raw = depth_raw(k).astype(np.float32)
        depth = t["depth_zbuffer"][0]
        assert depth[0, 0] == 0 and depth[0, 1] == 0  # 65535 and 64500 are invalid
        assert depth[0, 2] == pytest.approx(64499 / 512)
        assert torch.allclose(depth[1:], torch.from_numpy(raw[1:] / 512))
        kp = (np.arange(H * W).reshape(H, W) * 101 + k) % 65536
        edge = (np.arange(H * W).reshape(H, W) * 211 + k) % 65536
        assert torch.allclose(t["keypoints2d"][0], torch.from_numpy((kp - 50.0) / 100.0).float())
        assert torch.allclose(t["edge_texture"][0], torch.from_numpy((edge - 718.0) / 1070.0).float())
        _, u = unit[n]
        assert torch.allclose(u["keypoints2d"][0], torch.from_numpy(kp / 65535.0).float())
        assert torch.allclose(u["edge_texture"][0], torch.from_numpy(edge / 65535.0).float())
        # normals: 2v/255 − 1, normalised; zero where the depth is invalid (no mask folder)
        rec = ds.names[n].split("/")
        rgb = np.array(Image.open(taskonomy_root / "normal" / rec[0] / f"{rec[1]}_domain_normal.png"))
        dec = torch.from_numpy(2 * rgb.astype(np.float64) / 255 - 1).permute(2, 0, 1).float()
        dec = dec / dec.norm(dim=0, keepdim=True)
        assert torch.all(t["normal"][:, 0, :2] == 0)
        assert torch.allclose(t["normal"][:, 1:], dec[:, 1:], atol=1e-5)


def test_taskonomy_mask_folder_and_omnidata_layout(tmp_path):
    root = make_taskonomy(tmp_path / "omni", nested=True, mask_for=("onaga",))
    ds = taskonomy(root, image_size=[H, W], test_buildings=["onaga"]).load_split("test")
    _, t = ds[0]
    assert torch.all(t["normal"][:, :, :4] == 0)  # the mask PNG's zeros
    norm = t["normal"][:, :, 4:].norm(dim=0)
    assert torch.allclose(norm, torch.ones_like(norm), atol=1e-5)  # the mask wins over the depth


def test_taskonomy_splits(taskonomy_root):
    every = _all_records()
    data = taskonomy(taskonomy_root, test_fraction=0.3, val_fraction=0.25, data_seed=2)
    train, val, test = (data.load_split(s).names for s in ("train", "val", "test"))
    assert len(test) == 3 and len(val) == 2 and len(train) == 5
    assert sorted(train + val + test) == sorted(every)
    assert not (set(train) & set(val)) and not (set(train) & set(test)) and not (set(val) & set(test))
    assert taskonomy(taskonomy_root, test_fraction=0.3, val_fraction=0.25, data_seed=2).load_split("test").names == test
    by_building = taskonomy(taskonomy_root, test_buildings=["onaga"], val_fraction=0.2)
    b_train, b_val, b_test = (by_building.load_split(s).names for s in ("train", "val", "test"))
    assert b_test == _all_records(("onaga",))
    assert sorted(b_train + b_val) == sorted(_all_records(("allensville",))) and len(b_val) == 1
    assert taskonomy(taskonomy_root, buildings=["onaga"]).load_split("train").names[0].startswith("onaga/")
    # point/view order is numeric, not lexical (point_10 after point_2)
    assert taskonomy(taskonomy_root, buildings=["onaga"], test_fraction=0.0, val_fraction=0.0) \
        .load_split("train").names == _all_records(("onaga",))
    with pytest.raises(UserError, match="domain.data.test_buildings"):
        taskonomy(taskonomy_root, test_buildings=["collierville"]).load_split("train")
    with pytest.raises(UserError, match="domain.data.test_buildings"):
        taskonomy(taskonomy_root, test_buildings=["onaga", "allensville"]).load_split("train")


def test_taskonomy_flip_augmentation(taskonomy_root):
    aug = taskonomy(taskonomy_root, image_size=[10, 12], seed=5, test_fraction=0.0, val_fraction=0.0)
    plain = taskonomy(taskonomy_root, image_size=[10, 12], seed=5, test_fraction=0.0, val_fraction=0.0,
                      augment=False)
    ds, ref = aug.load_split("train"), plain.load_split("train")
    flips = 0
    for epoch in range(3):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            (image, t), (ref_image, r) = ds[i], ref[i]
            if torch.equal(image, ref_image):
                assert all(torch.equal(t[k], r[k]) for k in t)
            else:
                flips += 1
                assert torch.equal(image, ref_image.flip(-1))
                for k in ("segment_semantic", "depth_zbuffer", "keypoints2d", "edge_texture"):
                    assert torch.equal(t[k], r[k].flip(-1))
                expected = r["normal"].flip(-1).clone()
                expected[0] = -expected[0]
                assert torch.equal(t["normal"], expected)
            assert _equal(ds[i], (image, t))  # the same (seed, epoch, index) → the same sample
    assert 0 < flips < 3 * len(ds)
    for split in ("val", "test"):
        s = taskonomy(taskonomy_root, image_size=[10, 12], seed=5).load_split(split)
        assert not s.augment


def test_taskonomy_missing_data_is_a_user_error(taskonomy_root, tmp_path):
    with pytest.raises(UserError, match=r"^domain\.data\.root: no folder .*nowhere"):
        taskonomy(tmp_path / "nowhere").load_split("train")
    with pytest.raises(UserError, match=r"domain\.data\.root: no folder .*rgb.*collierville"):
        taskonomy(taskonomy_root, buildings=["allensville", "collierville"]).load_split("train")
    broken = make_taskonomy(tmp_path / "broken", buildings=("onaga",))
    (broken / "edge_texture/onaga" / "point_1_view_0_domain_edge_texture.png").unlink()
    with pytest.raises(UserError, match=r"domain\.data\.root: 1 of 5 files missing, first .*edge_texture"):
        taskonomy(broken, buildings=["onaga"]).load_split("test")
    import shutil

    no_normals = make_taskonomy(tmp_path / "no_normals", buildings=("onaga",))
    shutil.rmtree(no_normals / "normal")
    with pytest.raises(UserError, match=r"domain\.data\.root: no folder .*normal"):
        taskonomy(no_normals, buildings=["onaga"]).load_split("test")
    with pytest.raises(UserError, match="domain.data.image_size"):
        taskonomy(taskonomy_root, image_size=[0, 3])


def test_taskonomy_tasks_and_defaults():
    defaults = {p.name: p.default for p in Taskonomy.declared_params()}
    assert defaults["buildings"] == ["allensville", "collierville", "mifflinburg", "noxapater", "onaga"]
    assert Taskonomy(seed=0, root="unused").image_size == (256, 256)
    assert PascalContext(seed=0, root="unused").image_size == (512, 512)
    pytest.importorskip("mtl_platform_plugins.domains.dense.tasks.depth")
    pytest.importorskip("mtl_platform_plugins.domains.dense.tasks.pixel_l1")
    tasks = Taskonomy(seed=0, root="unused").build_tasks()
    assert [t.name for t in tasks] == ["segment_semantic", "depth_zbuffer", "keypoints2d", "edge_texture", "normal"]
    assert tasks[0].num_classes == 17 and tasks[0].ignore_index == -1
    assert tasks[2].ignore_value is None and tasks[3].ignore_value is None
    assert tasks[4].spread == "median"
