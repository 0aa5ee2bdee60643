"""The retrieval data (issue 22): procedural scenes whose targets are exactly the modified scenes,
a pure function of the seed; and the TIRG release's CSS files, read from a fixture written in
that format, into the right (query, text, target) triplets."""
from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch

from mtl_platform.errors import UserError
from mtl_platform_plugins.domains.retrieval.data.css import CSS, FILE, read_npy_object
from mtl_platform_plugins.domains.retrieval.data.scenes import ROWS, COLUMNS, Scenes, plan_split


def _apply(text: str, scene: tuple) -> tuple:
    """An independent reading of a modification text: the scene it asks for."""
    words = text.split()
    out = list(scene)
    if words[0] == "add":
        size, colour, shape, _, where = words[1:]
        row, column = where.split("-")
        cell = 3 * ROWS.index(row) + COLUMNS.index(column)
        assert out[cell] is None
        out[cell] = (shape, colour, size)
    elif words[0] == "remove":
        size, colour, shape = words[1:]
        (cell,) = [i for i, o in enumerate(out) if o == (shape, colour, size)]
        out[cell] = None
    else:
        colour, shape, *new = words[1:]
        (cell,) = [i for i, o in enumerate(out) if o is not None and o[:2] == (shape, colour)]
        s, c, z = out[cell]
        if new[0] == "a":
            s = new[1]
        elif new[0] in ("small", "large"):
            z = new[0]
        else:
            c = new[0]
        out[cell] = (s, c, z)
    return tuple(out)


def test_every_target_is_exactly_the_scene_its_text_asks_for():
    keys, source, target, texts, _ = plan_split(60, 4, 2, 5, seed=3, split="train")
    assert len(source) == 240 and {t.split()[0] for t in texts} == {"add", "remove", "make"}
    for s, t, text in zip(source, target, texts):
        assert _apply(text, keys[s]) == keys[t], text
    # each base scene's modifications lead to different targets
    for b in range(0, len(keys), 5):
        assert len({keys[t] for s, t in zip(source, target) if s == b}) == 4


def test_scenes_are_a_pure_function_of_the_seed_and_the_split():
    a = Scenes(train_scenes=5, val_scenes=2, test_scenes=3, image_size=16, data_seed=1).load("train")
    b = Scenes(train_scenes=5, val_scenes=2, test_scenes=3, image_size=16, data_seed=1).load("train")
    c = Scenes(train_scenes=5, val_scenes=2, test_scenes=3, image_size=16, data_seed=2).load("train")
    t = Scenes(train_scenes=5, val_scenes=2, test_scenes=5, image_size=16, data_seed=1).load("test")
    assert torch.equal(a.images, b.images) and a.texts == b.texts
    assert not torch.equal(a.images, c.images) and not torch.equal(a.images, t.images)
    assert a.images.shape == (25, 3, 16, 16) and a.images.dtype == torch.uint8


def test_images_of_one_scene_share_its_id():
    keys, *_ = plan_split(200, 4, 2, 5, seed=0, split="test")
    split = Scenes(test_scenes=200, image_size=8).load("test")
    for i in range(len(keys)):
        for j in (i + 1, i + 7):
            if j < len(keys):
                assert (keys[i] == keys[j]) == bool(split.scenes[i] == split.scenes[j])


# -- CSS, the TIRG release's format -------------------------------------------------------------

def _objects(*cells):
    return [{"shape": s, "color": c, "size": z, "pos": [float(p[0]), float(p[1])]} for s, c, z, p in cells]


def write_css(root, with_labels=True):
    """A tiny CSS in the release's layout: the pickled dict in ``FILE`` and the PNGs."""
    from PIL import Image

    train = {"objects_img": [_objects(("rectangle", "red", "large", (0.2, 0.2))),
                             _objects(("rectangle", "red", "large", (0.2, 0.2)), ("circle", "blue", "small", (0.5, 0.5))),
                             _objects(), _objects(("circle", "blue", "small", (0.5, 0.5)))],
             "mods": [{"from": [0, 3], "to": [1, 1], "to_str": "add blue circle to middle-center"},
                      {"from": [1], "to": [3], "to_str": "remove red rectangle"}]}
    test = {"objects_img": [_objects(("circle", "gray", "large", (0.8, 0.8))), _objects(), _objects()],
            "mods": [{"from": [0], "to": [1], "to_str": "remove gray circle"}]}
    if with_labels:
        train["labels"] = [0, 1, 2, 3]
        test["labels"] = [0, 1, 1]  # test images 1 and 2 show the same (empty) scene
    np.save(root / FILE, np.array({"train": train, "test": test}, dtype=object), allow_pickle=True)
    (root / "images").mkdir()
    rng = np.random.default_rng(0)
    for split, n in (("train", 4), ("test", 3)):
        for i in range(n):
            Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)).save(
                root / "images" / f"css_{split}_{i:06d}.png")


def test_css_files_load_into_query_text_target_triplets(tmp_path):
    write_css(tmp_path)
    css = CSS(root=str(tmp_path), image_size=8, val_fraction=0.34, data_seed=0)
    train, val, test = css.load("train"), css.load("val"), css.load("test")
    every = sorted(zip(train.source.tolist() + val.source.tolist(), train.target.tolist() + val.target.tolist(),
                       train.texts + val.texts))
    assert every == [(0, 1, "add blue circle to middle-center"), (1, 3, "remove red rectangle"),
                     (3, 1, "add blue circle to middle-center")]
    assert len(val) == 1 and len(train) == 2  # validation queries are held out of training
    assert list(zip(test.source.tolist(), test.target.tolist(), test.texts)) == [(0, 1, "remove gray circle")]
    assert test.scenes.tolist() == [0, 1, 1] and test.images.shape == (3, 3, 8, 8)
    from PIL import Image

    png = np.asarray(Image.open(tmp_path / "images" / "css_test_000002.png").resize((8, 8), Image.BILINEAR))
    assert np.array_equal(test.images[2].permute(1, 2, 0).numpy(), png)


def test_css_without_labels_makes_every_image_its_own_scene(tmp_path):
    write_css(tmp_path, with_labels=False)
    assert CSS(root=str(tmp_path), image_size=8).load("test").scenes.tolist() == [0, 1, 2]


def test_missing_css_files_name_the_path_and_where_to_get_them(tmp_path):
    with pytest.raises(UserError, match=rf"{tmp_path}/{FILE}' not found; get the CSS dataset from the TIRG release"):
        CSS(root=str(tmp_path)).load("train")
    write_css(tmp_path)
    (tmp_path / "images" / "css_test_000001.png").unlink()
    with pytest.raises(UserError, match=r"image '.*css_test_000001.png' not found"):
        CSS(root=str(tmp_path), image_size=8).load("test")


class _Evil:
    """Unpickling calls os.getcwd (harmless; stands for any callable). Not ``print``: another
    library in the same process (Ray's tqdm_ray) may have replaced builtins.print."""

    def __reduce__(self):
        return (os.getcwd, ())


def test_the_css_reader_refuses_a_pickle_that_would_run_code(tmp_path):
    path = tmp_path / FILE
    np.save(path, np.array({"train": _Evil()}, dtype=object), allow_pickle=True)
    with pytest.raises(pickle.UnpicklingError, match=r"global \w+\.getcwd is not allowed"):
        read_npy_object(path)
    with pytest.raises(UserError, match="cannot read .* as the CSS file"):
        CSS(root=str(tmp_path)).load("train")
