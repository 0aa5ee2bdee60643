"""NYUv2 / CityScapes loaders in the MTAN/LibMTL preprocessed .npy layout, and their augmentation.

Fixture folders are written in exactly the on-disk format (numbered .npy files per modality,
HWC images in [0, 1], float label maps with -1 ignore, HW1 depth with 0 invalid, HW3 normals).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import default_collate

from mtl_platform.errors import UserError
from mtl_platform_plugins.domains.dense.data.augment import sample_generator, sample_seed, scale_crop_flip
from mtl_platform_plugins.domains.dense.data.cityscapes import CityScapes
from mtl_platform_plugins.domains.dense.data.npy_folder import NpyFolder, carve_validation
from mtl_platform_plugins.domains.dense.data.nyuv2 import NYUv2

pytestmark = pytest.mark.usefixtures("one_thread")


# -- fixtures in the on-disk format ------------------------------------------------------------
def _labels(rng, h, w, classes):
    lab = rng.integers(0, classes, size=(h, w)).astype(np.float32)
    lab[: h // 4, :] = -1  # an unlabelled band
    lab[rng.random((h, w)) < 0.05] = -1
    lab[h // 2, w // 2] = -1  # inside every crop
    return lab


def _normals(rng, h, w):
    n = rng.normal(size=(h, w, 3)).astype(np.float32)
    n /= np.linalg.norm(n, axis=-1, keepdims=True)
    n[h // 2:, : w // 4] = 0  # invalid block
    return n


def _image(rng, h, w, number):
    img = rng.random((h, w, 3)).astype(np.float32)
    img[0, 0, 0] = number / 1000.0  # which file this is
    return img


def write_nyuv2(root, n_train=6, n_test=3, h=288, w=384, seed=0, depth_value=None):
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("val", n_test)):
        for sub in ("image", "label", "depth", "normal"):
            (root / split / sub).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            depth = (np.full((h, w, 1), depth_value, np.float32) if depth_value is not None
                     else (rng.random((h, w, 1)) * 9 + 0.5).astype(np.float32))
            if depth_value is None:
                depth[: h // 3, w // 2:] = 0  # invalid
                depth[h // 2 - 1: h // 2 + 1, w // 2 - 1: w // 2 + 1] = 0  # inside every crop
            np.save(root / split / "image" / f"{i}.npy", _image(rng, h, w, i + (500 if split == "val" else 0)))
            np.save(root / split / "label" / f"{i}.npy", _labels(rng, h, w, 13))
            np.save(root / split / "depth" / f"{i}.npy", depth)
            np.save(root / split / "normal" / f"{i}.npy", _normals(rng, h, w))
    return root


def write_cityscapes(root, n_train=5, n_test=2, h=128, w=256, label_dirs=("label_7", "label_19"),
                     seed=1, depth_value=None):
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("val", n_test)):
        for sub in ("image", "depth", *label_dirs):
            (root / split / sub).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            np.save(root / split / "image" / f"{i}.npy", _image(rng, h, w, i))
            for sub in label_dirs:
                classes = 19 if sub == "label_19" else 7
                np.save(root / split / sub / f"{i}.npy", _labels(rng, h, w, classes).astype(np.float64))
            depth = (np.full((h, w, 1), depth_value, np.float32) if depth_value is not None
                     else (rng.random((h, w, 1)) * 0.3).astype(np.float32))
            if depth_value is None:
                depth[: h // 3, : w // 3] = 0
            np.save(root / split / "depth" / f"{i}.npy", depth)
    return root


def make(cls, root, **overrides):
    params = {p.name: p.default for p in cls.declared_params() if not p.required}
    params.update(root=str(root), **overrides)
    return cls(seed=0, **params)


def raw(root, split, sub, i):
    return np.load(root / split / sub / f"{i}.npy")


def file_number(image):
    return int(round(float(image[0, 0, 0]) * 1000))


# -- formats ------------------------------------------------------------------------------------
def test_nyuv2_real_shapes_dtypes_and_values(tmp_path):
    root = write_nyuv2(tmp_path / "nyuv2", n_train=4, n_test=2)
    data = make(NYUv2, root, augment=False, val_fraction=0.25)
    assert data.name == "nyuv2" and data.image_size == (288, 384)
    for split in ("train", "val", "test"):
        ds = data.load_split(split)
        on_disk = "val" if split == "test" else "train"
        image, targets = ds[0]
        assert set(targets) == {"segmentation", "depth", "normal"}
        assert image.shape == (3, 288, 384) and image.dtype == torch.float32
        seg, depth, normal = targets["segmentation"], targets["depth"], targets["normal"]
        assert seg.shape == (288, 384) and seg.dtype == torch.int64
        assert depth.shape == (1, 288, 384) and depth.dtype == torch.float32
        assert normal.shape == (3, 288, 384) and normal.dtype == torch.float32
        number = ds.indices[0]
        assert torch.equal(image, torch.from_numpy(raw(root, on_disk, "image", number)).permute(2, 0, 1))
        lab = raw(root, on_disk, "label", number)
        assert torch.equal(seg, torch.from_numpy(lab).long()) and (seg == -1).any()
        assert torch.equal(depth[0], torch.from_numpy(raw(root, on_disk, "depth", number)[..., 0]))
        assert (depth[0, :96, 192:] == 0).all()
        assert torch.equal(normal, torch.from_numpy(raw(root, on_disk, "normal", number)).permute(2, 0, 1))
    assert data.image_size == (288, 384)
    batch = default_collate([ds[0], ds[1]])
    assert batch[0].shape == (2, 3, 288, 384) and batch[1]["segmentation"].shape == (2, 288, 384)
    augmented = make(NYUv2, root, val_fraction=0.25).load_split("train")
    augmented.set_epoch(1)
    image, targets = augmented[0]
    assert image.shape == (3, 288, 384) and targets["segmentation"].shape == (288, 384)
    assert targets["depth"].shape == (1, 288, 384) and targets["normal"].shape == (3, 288, 384)


def test_cityscapes_real_shapes_and_label_folders(tmp_path):
    root = write_cityscapes(tmp_path / "cs", n_train=4, n_test=2)
    data = make(CityScapes, root, augment=False)
    assert data.name == "cityscapes" and data.image_size == (128, 256)
    image, targets = data.load_split("test")[1]
    assert image.shape == (3, 128, 256) and image.dtype == torch.float32
    assert set(targets) == {"segmentation", "depth"}
    seg, depth = targets["segmentation"], targets["depth"]
    assert seg.dtype == torch.int64 and seg.shape == (128, 256)
    assert depth.dtype == torch.float32 and depth.shape == (1, 128, 256)
    assert torch.equal(seg, torch.from_numpy(raw(root, "val", "label_7", 1)).long())
    assert (seg == -1).any() and seg.max() < 7 and (depth[0, :42, :85] == 0).all()
    # 19 classes read label_19
    seg19 = make(CityScapes, root, augment=False, classes=19).load_split("test")[1][1]["segmentation"]
    assert torch.equal(seg19, torch.from_numpy(raw(root, "val", "label_19", 1)).long())
    # LibMTL's copy: the 7-class labels in label/
    lib = write_cityscapes(tmp_path / "libmtl", n_train=3, n_test=1, h=16, w=32, label_dirs=("label",))
    seg = make(CityScapes, lib, augment=False).load_split("test")[0][1]["segmentation"]
    assert torch.equal(seg, torch.from_numpy(raw(lib, "val", "label", 0)).long())
    with pytest.raises(UserError, match=r"domain\.data\.root.*label_19"):
        make(CityScapes, lib, classes=19).load_split("test")


def test_any_image_size_and_integer_labels(tmp_path):
    root = write_nyuv2(tmp_path / "small", n_train=3, n_test=1, h=20, w=28)
    np.save(root / "val" / "label" / "0.npy", raw(root, "val", "label", 0).astype(np.int32))
    data = make(NYUv2, root)
    seg = data.load_split("test")[0][1]["segmentation"]
    assert seg.dtype == torch.int64 and (seg == -1).any()
    assert data.image_size == (20, 28)


def test_missing_data_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match=r"^domain\.data\.root: no folder .*nowhere.*\{train,val\}.*dropbox"):
        make(NYUv2, tmp_path / "nowhere").load_split("train")
    with pytest.raises(UserError, match=r"domain\.data\.root.*cityscapes"):
        make(CityScapes, tmp_path / "nowhere").load_split("test")
    root = write_nyuv2(tmp_path / "nyu", n_train=4, n_test=1, h=8, w=8)
    (root / "train" / "depth" / "2.npy").unlink()
    with pytest.raises(UserError, match=r"domain\.data\.root.*train/depth/2\.npy"):
        make(NYUv2, root).load_split("val")
    make(NYUv2, root).load_split("test")  # the test folder itself is complete
    for f in (root / "val" / "normal").iterdir():
        f.unlink()
    with pytest.raises(UserError, match=r"domain\.data\.root.*val/normal") as info:
        make(NYUv2, root).load_split("test")
    assert "\n" not in str(info.value)


# -- splits -------------------------------------------------------------------------------------
def test_val_is_carved_from_train_and_test_is_the_on_disk_val(tmp_path):
    root = write_nyuv2(tmp_path / "nyu", n_train=20, n_test=3, h=8, w=12)
    data = make(NYUv2, root, val_fraction=0.25, data_seed=3, augment=False)
    train, val, test = (data.load_split(s) for s in ("train", "val", "test"))
    assert len(train) == 15 and len(val) == 5 and len(test) == 3
    train_files = sorted(file_number(train[i][0]) for i in range(len(train)))
    val_files = sorted(file_number(val[i][0]) for i in range(len(val)))
    assert not set(train_files) & set(val_files)
    assert sorted(train_files + val_files) == list(range(20))
    assert sorted(file_number(test[i][0]) for i in range(3)) == [500, 501, 502]
    again = make(NYUv2, root, val_fraction=0.25, data_seed=3).load_split("val")
    assert again.indices == val.indices
    other = make(NYUv2, root, val_fraction=0.25, data_seed=4).load_split("val")
    assert other.indices != val.indices
    # 795 NYUv2 training images with the default fraction: 80 for validation
    tr, va = carve_validation(795, 0.1, 0)
    assert len(va) == 80 and len(tr) == 715 and not set(tr) & set(va)
    with pytest.raises(UserError, match="val_fraction"):
        make(NYUv2, root, val_fraction=1.0).load_split("val")


# -- augmentation -------------------------------------------------------------------------------
def test_augmentation_is_a_pure_function_of_seed_epoch_index(tmp_path):
    root = write_nyuv2(tmp_path / "nyu", n_train=8, n_test=2, h=24, w=32)
    ds = make(NYUv2, root).load_split("train")
    assert ds.augment
    ds.set_epoch(3)
    a = [ds[i] for i in range(len(ds))]
    b = make(NYUv2, root).load_split("train")
    b.set_epoch(3)
    for i in range(len(ds)):
        x, y = a[i], b[i]
        assert torch.equal(x[0], y[0])
        assert all(torch.equal(x[1][t], y[1][t]) for t in x[1])
    ds.set_epoch(4)
    assert any(not torch.equal(a[i][1]["depth"], ds[i][1]["depth"]) for i in range(len(ds)))
    assert sample_seed(0, 0, 0) == 1279368494785126216  # integer arithmetic: the same in every process
    assert len({sample_seed(s, e, i) for s in range(3) for e in range(3) for i in range(3)}) == 27
    g1, g2 = sample_generator(1, 2, 3), sample_generator(1, 2, 3)
    assert torch.equal(torch.rand(4, generator=g1), torch.rand(4, generator=g2))


def test_augmented_targets_keep_their_meaning(tmp_path):
    root = write_nyuv2(tmp_path / "nyu", n_train=4, n_test=1, h=24, w=32)
    ds = make(NYUv2, root, val_fraction=0.0).load_split("train")
    for epoch in range(6):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            image, t = ds[i]
            assert image.shape == (3, 24, 32) and t["segmentation"].dtype == torch.int64
            labels = set(torch.unique(t["segmentation"]).tolist())
            assert labels <= set(range(-1, 13))
            assert -1 in labels
            norm = t["normal"].norm(dim=0)
            assert bool(((norm - 1).abs() < 1e-5).logical_or(norm == 0).all())
            assert t["depth"].min() >= 0 and (t["depth"] == 0).any()


def test_scale_divides_depth_and_multiplies_disparity(tmp_path):
    root = write_nyuv2(tmp_path / "nyu", n_train=3, n_test=1, h=12, w=16, depth_value=3.0)
    ds = make(NYUv2, root, val_fraction=0.0).load_split("train")
    seen = set()
    for epoch in range(12):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            values = torch.unique(ds[i][1]["depth"])
            assert len(values) == 1
            s = 3.0 / float(values)
            assert min(abs(s - c) for c in (1.0, 1.2, 1.5)) < 1e-5
            seen.add(round(s, 3))
    assert seen == {1.0, 1.2, 1.5}
    cs = write_cityscapes(tmp_path / "cs", n_train=3, n_test=1, h=8, w=16, label_dirs=("label_7",),
                          depth_value=0.5)
    ds = make(CityScapes, cs, val_fraction=0.0).load_split("train")
    seen = set()
    for epoch in range(12):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            seen.add(round(float(torch.unique(ds[i][1]["depth"])), 4))
    assert seen == {0.5, 0.6, 0.75}  # inverse depth x s


def test_flip_mirrors_labels_and_negates_normal_x():
    rng = np.random.default_rng(0)
    h, w = 10, 14
    image = torch.from_numpy(rng.random((3, h, w)).astype(np.float32))
    seg = torch.from_numpy(rng.integers(-1, 13, (h, w)))
    normal = torch.from_numpy(np.moveaxis(_normals(rng, h, w), -1, 0).copy())
    depth = torch.rand(1, h, w)
    kinds = {"seg": "segmentation", "depth": "depth", "normal": "normals"}
    flips = 0
    for k in range(20):
        out_image, out = scale_crop_flip(image, {"seg": seg, "depth": depth, "normal": normal}, kinds,
                                         sample_generator(0, 0, k), scales=(1.0,))
        if torch.equal(out["seg"], seg):
            assert torch.equal(out_image, image) and torch.equal(out["normal"], normal)
            continue
        flips += 1
        assert torch.equal(out["seg"], seg.flip(-1)) and torch.equal(out_image, image.flip(-1))
        assert torch.equal(out["depth"], depth.flip(-1))
        assert torch.equal(out["normal"][0], -normal[0].flip(-1))
        assert torch.equal(out["normal"][1:], normal[1:].flip(-1))
    assert 0 < flips < 20
    no_flip = [scale_crop_flip(image, {"seg": seg}, kinds, sample_generator(0, 0, k), scales=(1.0,),
                               flip=False)[1]["seg"] for k in range(20)]
    assert all(torch.equal(s, seg) for s in no_flip)


def test_crop_is_nearest_on_a_window():
    h, w = 12, 16
    coords = torch.arange(h * w).reshape(h, w)  # each pixel's own id
    image = torch.zeros(3, h, w)
    for k in range(10):
        _, out = scale_crop_flip(image, {"id": coords}, {"id": "segmentation"}, sample_generator(5, 1, k),
                                 scales=(1.5,), flip=False)
        ids = out["id"]
        rows, cols = ids // w, ids % w
        assert rows.max() - rows.min() + 1 == 8 and cols.max() - cols.min() + 1 == 10  # int(12/1.5), int(16/1.5)
        assert (rows.diff(dim=0) >= 0).all() and (cols.diff(dim=1) >= 0).all()


def test_val_and_test_are_not_augmented(tmp_path):
    root = write_nyuv2(tmp_path / "nyu", n_train=10, n_test=2, h=12, w=16)
    data = make(NYUv2, root, val_fraction=0.3)
    for split in ("val", "test"):
        ds = data.load_split(split)
        assert not ds.augment
        on_disk = "val" if split == "test" else "train"
        for epoch in (0, 5):
            ds.set_epoch(epoch)
            for i in range(len(ds)):
                image, t = ds[i]
                n = ds.indices[i]
                assert torch.equal(image, torch.from_numpy(raw(root, on_disk, "image", n)).permute(2, 0, 1))
                assert torch.equal(t["segmentation"], torch.from_numpy(raw(root, on_disk, "label", n)).long())
    assert not make(NYUv2, root, augment=False).load_split("train").augment


def test_npy_folder_generic_kinds(tmp_path):
    folder = tmp_path / "split"
    for sub in ("image", "sal", "edge"):
        (folder / sub).mkdir(parents=True)
    for i in range(2):
        np.save(folder / "image" / f"{i}.npy", np.ones((6, 8, 3), np.float32))
        np.save(folder / "sal" / f"{i}.npy", np.eye(6, 8, dtype=np.uint8))
        np.save(folder / "edge" / f"{i}.npy", np.full((6, 8), 0.25, np.float32))
    ds = NpyFolder(folder, {"saliency": ("sal", "saliency"), "edges": ("edge", "dense")}, augment=True, seed=1)
    for epoch in range(5):
        ds.set_epoch(epoch)
        _, t = ds[1]
        assert t["saliency"].dtype == torch.int64 and set(t["saliency"].unique().tolist()) <= {0, 1}
        assert t["edges"].shape == (1, 6, 8) and bool((t["edges"] == 0.25).all())  # not rescaled
    assert len(ds.subset([1])) == 1


# -- tasks (written by the tasks helper; skipped until they exist) -----------------------------
def test_build_tasks(tmp_path):
    pytest.importorskip("mtl_platform_plugins.domains.dense.tasks.segmentation")
    pytest.importorskip("mtl_platform_plugins.domains.dense.tasks.depth")
    pytest.importorskip("mtl_platform_plugins.domains.dense.tasks.normals")
    tasks = make(NYUv2, tmp_path, pixel_metric="error").build_tasks()
    assert [t.name for t in tasks] == ["segmentation", "depth", "normal"]
    assert tasks[0].num_classes == 13 and tasks[0].ignore_index == -1
    assert [t.name for t in make(CityScapes, tmp_path).build_tasks()] == ["segmentation", "depth"]
    tasks = make(CityScapes, tmp_path, classes=19).build_tasks()
    assert [t.name for t in tasks] == ["segmentation", "depth"] and tasks[0].num_classes == 19
