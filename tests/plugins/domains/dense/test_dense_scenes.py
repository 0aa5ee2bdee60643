"""The procedural ``scenes`` dense data source and its ray caster: formats, determinism,
geometric consistency of the labels with the documented camera, and colour/class independence."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mtl_platform.errors import UserError
from mtl_platform_plugins.domains.dense.data.scenes import Scenes
from mtl_platform_plugins.domains.dense.data.scenes_render import (
    BOX, CLASSES, CYLINDER, FLOOR, IMAGE_MEAN, IMAGE_STD, NUM_CLASSES, SPHERE, WALL, pixel_rays,
    render_scene_spec, render_scenes, sample_scenes)

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = dict(image_size=[24, 32], train_images=160, val_images=40, test_images=30)


def camera_basis(pitch_deg, yaw_deg):
    """The documented camera frame: right, up, forward in world coordinates (rows of a matrix)."""
    p, y = math.radians(pitch_deg), math.radians(yaw_deg)
    right = np.array([math.cos(y), 0.0, -math.sin(y)])
    up = np.array([math.sin(y) * math.sin(p), math.cos(p), math.cos(y) * math.sin(p)])
    forward = np.array([math.sin(y) * math.cos(p), -math.sin(p), math.cos(y) * math.cos(p)])
    return np.stack([right, up, forward])


def back_project(depth, size):
    """Camera-frame 3-D points (H, W, 3) of a depth map (1, 1, H, W) or (1, H, W)."""
    return pixel_rays(size).numpy() * depth.reshape(size)[..., None].numpy()


@pytest.fixture(scope="module")
def small(one_thread):
    data = Scenes(seed=0, **SMALL)
    return data, {split: data.load_split(split) for split in ("train", "val", "test")}


# -- the data source ----------------------------------------------------------------------------

def test_params_defaults_and_image_size():
    names = [p.name for p in Scenes.declared_params()]
    assert names == ["image_size", "train_images", "val_images", "test_images", "data_seed", "max_objects"]
    data = Scenes()
    assert data.image_size == (64, 64) and isinstance(data.image_size, tuple)
    assert Scenes(image_size=[48, 64]).image_size == (48, 64)
    assert Scenes.name == "scenes"
    for bad in ([8, 64], [64], [64, 64, 3], [64.5, 64]):
        with pytest.raises(UserError, match="image_size"):
            Scenes(image_size=bad)
    with pytest.raises(UserError, match="max_objects"):
        Scenes(max_objects=0)
    with pytest.raises(ValueError, match="split"):
        data.load_split("validation")


def test_samples_have_the_dense_contract_format(small):
    data, splits = small
    H, W = data.image_size
    for split, n in (("train", 160), ("val", 40), ("test", 30)):
        ds = splits[split]
        assert len(ds) == n
        image, targets = ds[0]
        assert image.shape == (3, H, W) and image.dtype == torch.float32
        assert set(targets) == {"segmentation", "depth", "normal"}
        assert targets["segmentation"].shape == (H, W) and targets["segmentation"].dtype == torch.int64
        assert targets["depth"].shape == (1, H, W) and targets["depth"].dtype == torch.float32
        assert targets["normal"].shape == (3, H, W) and targets["normal"].dtype == torch.float32
        batch_images, batch_targets = ds.get_batch(torch.tensor([0, 2, 1]))
        assert batch_images.shape == (3, 3, H, W) and torch.equal(batch_images[1], ds[2][0])
    assert data.load_split("train") is splits["train"]  # cached on the instance


def test_images_are_normalised_per_channel(small):
    images = small[1]["train"].inputs
    mean = images.mean(dim=(0, 2, 3))
    std = images.transpose(0, 1).reshape(3, -1).std(dim=1)
    assert mean.abs().max() < 0.25 and ((std - 1).abs() < 0.25).all(), (mean, std)


def test_same_params_same_data_other_seed_other_data(small):
    _, splits = small
    again = Scenes(seed=123, **SMALL).load_split("val")  # the run seed does not change the data
    assert torch.equal(again.inputs, splits["val"].inputs)
    for task in ("segmentation", "depth", "normal"):
        assert torch.equal(again.targets[task], splits["val"].targets[task])
    other = Scenes(data_seed=1, **SMALL).load_split("val")
    assert not torch.equal(other.inputs, splits["val"].inputs)
    assert not torch.equal(other.targets["depth"], splits["val"].targets["depth"])


def test_splits_are_different_scenes(small):
    _, splits = small
    a, b, c = (splits[s].targets["depth"][:30] for s in ("train", "val", "test"))
    assert not torch.equal(a, b) and not torch.equal(b, c) and not torch.equal(a, c)
    # not even one identical depth map shared between train and val
    same = (a[:, None] == b[None]).flatten(2).all(-1)
    assert not same.any()


def test_every_class_appears_and_every_pixel_is_hit(small):
    _, splits = small
    seg = splits["train"].targets["segmentation"]
    assert set(seg.unique().tolist()) == set(range(NUM_CLASSES))
    for split in splits.values():
        seg, depth, normal = (split.targets[t] for t in ("segmentation", "depth", "normal"))
        assert (seg >= 0).all() and (seg < NUM_CLASSES).all()  # the wall closes the scene
        assert (depth > 0).all() and torch.isfinite(depth).all()
        assert torch.allclose(normal.norm(dim=1), torch.ones(()), atol=1e-4)


def test_normals_face_the_camera(small):
    data, splits = small
    rays = pixel_rays(data.image_size).permute(2, 0, 1)  # (3, H, W) camera frame
    cos = (splits["train"].targets["normal"] * rays).sum(1)
    assert (cos < 1e-5).all()


def test_depth_and_normals_agree_on_the_floor_and_wall_of_random_scenes(small):
    """Neighbouring floor pixels: their 3-D points differ by a vector orthogonal to the normal."""
    data, splits = small
    rays = pixel_rays(data.image_size)  # (H, W, 3)
    depth = splits["val"].targets["depth"][:, 0]
    seg = splits["val"].targets["segmentation"]
    normal = splits["val"].targets["normal"].permute(0, 2, 3, 1)
    points = rays[None] * depth[..., None]
    for cls in (FLOOR, WALL):
        both = (seg[:, :, 1:] == cls) & (seg[:, :, :-1] == cls)
        step = points[:, :, 1:] - points[:, :, :-1]
        along = (step * normal[:, :, 1:]).sum(-1)[both]
        assert both.sum() > 100 and along.abs().max() < 1e-3


def test_colour_alone_does_not_predict_the_class(small):
    """The best colour-only classifier (a fine RGB histogram, fit on train, scored on val) is no
    better than always answering the most frequent class."""
    _, splits = small
    mean, std = torch.tensor(IMAGE_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGE_STD).view(1, 3, 1, 1)
    q = 8

    def bins(split):
        rgb = (splits[split].inputs * std + mean).clamp(0, 1)
        b = (rgb * q).long().clamp(0, q - 1)
        return (b[:, 0] * q * q + b[:, 1] * q + b[:, 2]).flatten(), splits[split].targets["segmentation"].flatten()

    train_bins, train_seg = bins("train")
    table = torch.zeros(q ** 3, NUM_CLASSES)
    table.index_put_((train_bins, train_seg), torch.ones(len(train_bins)), accumulate=True)
    val_bins, val_seg = bins("val")
    accuracy = (table.argmax(1)[val_bins] == val_seg).float().mean().item()
    prior = (val_seg == torch.bincount(train_seg).argmax()).float().mean().item()
    assert accuracy < prior + 0.05, (accuracy, prior)
    # and per-class mean colours are close: no class is told by its average colour
    rgb = (splits["train"].inputs * std + mean).permute(0, 2, 3, 1)
    means = torch.stack([rgb[splits["train"].targets["segmentation"] == c].mean(0) for c in range(NUM_CLASSES)])
    assert torch.cdist(means, means).max() < 0.15, means


def test_build_tasks():
    pytest.importorskip("mtl_platform_plugins.domains.dense.tasks.segmentation")
    pytest.importorskip("mtl_platform_plugins.domains.dense.tasks.depth")
    pytest.importorskip("mtl_platform_plugins.domains.dense.tasks.normals")
    data = Scenes(image_size=[16, 16], train_images=4, val_images=2, test_images=2)
    tasks = data.build_tasks()
    assert [t.name for t in tasks] == ["segmentation", "depth", "normal"]
    seg_task = tasks[0]
    assert seg_task.num_classes == NUM_CLASSES == len(CLASSES) and seg_task.ignore_index == -1
    assert tasks[2].spread == "median"
    images, targets = data.load_split("train").get_batch(torch.arange(4))
    preds = {"segmentation": torch.zeros(4, NUM_CLASSES, 16, 16), "depth": torch.ones(4, 1, 16, 16),
             "normal": torch.nn.functional.normalize(torch.randn(4, 3, 16, 16), dim=1)}
    for task in tasks:
        loss = task.loss(preds[task.name], targets[task.name])
        assert loss.dim() == 0 and torch.isfinite(loss)
    assert abs(tasks[0].loss(preds["segmentation"], targets["segmentation"]).item() - math.log(NUM_CLASSES)) < 1e-4


# -- the renderer: geometry against the documented camera ----------------------------------------

def test_render_scenes_is_a_pure_function_of_the_generator():
    a = render_scenes(6, (20, 24), torch.Generator().manual_seed(5), max_objects=3)
    b = render_scenes(6, (20, 24), torch.Generator().manual_seed(5), max_objects=3)
    c = render_scenes(6, (20, 24), torch.Generator().manual_seed(6), max_objects=3)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a[2], c[2])
    assert a[0].min() >= 0 and a[0].max() <= 1  # unnormalised images are in [0, 1]


def test_random_objects_stand_on_the_floor_apart_and_before_the_wall():
    sc = sample_scenes(300, torch.Generator().manual_seed(3), max_objects=3)
    present = sc.obj_type >= 0
    count = present.sum(1)
    assert count.min() >= 1 and count.max() == 3
    size, pos = sc.obj_size, sc.obj_pos
    bottom = torch.where(sc.obj_type == CYLINDER, pos[..., 1], pos[..., 1] - size[..., 1])
    assert bottom[present].abs().max() < 1e-6  # resting on y = 0
    foot = torch.where(sc.obj_type == BOX, size[..., 0].hypot(size[..., 2]), size[..., 0])
    assert (pos[..., 2] + foot < sc.wall[:, None])[present].all()
    gap = (pos[:, :, None, [0, 2]] - pos[:, None, :, [0, 2]]).norm(dim=-1)
    pairs = present[:, :, None] & present[:, None, :] & ~torch.eye(3, dtype=torch.bool)
    assert (gap > foot[:, :, None] + foot[:, None, :])[pairs].all()  # no two objects overlap
    for cls in (SPHERE, BOX, CYLINDER):
        assert (sc.obj_type == cls).sum() > 100


@pytest.mark.parametrize("pitch, yaw", [(0.0, 0.0), (20.0, 15.0)])
def test_a_sphere_on_the_optical_axis(pitch, yaw):
    size, D, r, h = (33, 33), 4.0, 1.0, 2.5
    centre = np.array([0.0, h, 0.0]) + D * camera_basis(pitch, yaw)[2]
    assert centre[1] > r  # above the floor
    _, seg, depth, normal = render_scene_spec(size, [{"type": "sphere", "center": tuple(centre), "radius": r}],
                                              camera_height=h, pitch_deg=pitch, yaw_deg=yaw, wall=20.0)
    assert seg[0, 16, 16] == SPHERE
    assert depth[0, 0, 16, 16].item() == pytest.approx(D - r, abs=1e-4)
    assert torch.allclose(normal[0, :, 16, 16], torch.tensor([0.0, 0.0, -1.0]), atol=1e-4)
    # every sphere pixel: its back-projected point lies on the sphere, its normal is radial
    points = back_project(depth[0], size)
    mask = (seg[0] == SPHERE).numpy()
    assert mask.sum() > 100
    rel = points[mask] - np.array([0.0, 0.0, D])
    assert np.abs(np.linalg.norm(rel, axis=1) - r).max() < 1e-4
    assert np.abs(rel / r - normal[0].permute(1, 2, 0).numpy()[mask]).max() < 1e-3


@pytest.mark.parametrize("pitch, yaw", [(15.0, 0.0), (22.0, -12.0)])
def test_the_floor_and_wall_planes(pitch, yaw):
    size, h, wall = (40, 48), 1.6, 7.0
    _, seg, depth, normal = render_scene_spec(size, [], camera_height=h, pitch_deg=pitch, yaw_deg=yaw, wall=wall)
    basis = camera_basis(pitch, yaw)
    seg, depth = seg[0].numpy(), depth[0, 0].numpy()
    n = normal[0].permute(1, 2, 0).numpy()
    points = pixel_rays(size).numpy() * depth[..., None]
    world = points @ basis + np.array([0.0, h, 0.0])  # camera frame → world
    floor, wall_px = seg == FLOOR, seg == WALL
    assert floor.sum() > 200 and wall_px.sum() > 200 and (floor | wall_px).all()
    assert np.abs(world[floor][:, 1]).max() < 1e-4          # on y = 0
    assert np.abs(world[wall_px][:, 2] - wall).max() < 1e-3  # on z = wall
    assert np.abs(n[floor] - basis @ np.array([0.0, 1.0, 0.0])).max() < 1e-5
    assert np.abs(n[wall_px] - basis @ np.array([0.0, 0.0, -1.0])).max() < 1e-5
    if yaw == 0:
        assert np.allclose(n[floor][0], [0.0, math.cos(math.radians(pitch)), -math.sin(math.radians(pitch))],
                           atol=1e-5)
    # depth grows towards the horizon: up a column, floor depth strictly increases
    for j in range(size[1]):
        column = depth[:, j][floor[:, j]]
        assert (np.diff(column) < 0).all()  # rows go down the image: nearer


def test_nothing_hit_is_invalid_everywhere():
    size = (24, 24)
    image, seg, depth, normal = render_scene_spec(size, [], pitch_deg=-10.0, wall=None)
    miss = seg[0] == -1
    assert miss.any() and (~miss).any()
    assert torch.equal(miss, depth[0, 0] == 0)
    assert (normal[0][:, miss] == 0).all() and (image[0][:, miss] == 0).all()
    assert torch.allclose(normal[0][:, ~miss].norm(dim=0), torch.ones(()), atol=1e-5)


def test_a_sphere_in_front_of_a_box_occludes_it():
    size, h = (33, 33), 1.0
    sphere = {"type": "sphere", "center": (0.0, h, 4.0), "radius": 0.5}
    box = {"type": "box", "center": (0.0, h, 7.0), "half": (1.5, 0.9, 0.5)}
    out = render_scene_spec(size, [sphere, box], camera_height=h, pitch_deg=0.0)
    swapped = render_scene_spec(size, [box, sphere], camera_height=h, pitch_deg=0.0)
    assert all(torch.equal(a, b) for a, b in zip(out[1:], swapped[1:]))  # order does not matter
    _, seg, depth, _ = out
    assert seg[0, 16, 16] == SPHERE and depth[0, 0, 16, 16].item() == pytest.approx(3.5, abs=1e-4)
    box_px = seg[0] == BOX
    assert box_px.sum() > 50
    assert torch.allclose(depth[0, 0][box_px], torch.tensor(6.5), atol=1e-4)  # its front face
    # without the sphere, the box owns the centre
    _, seg_alone, depth_alone, _ = render_scene_spec(size, [box], camera_height=h, pitch_deg=0.0)
    assert seg_alone[0, 16, 16] == BOX and depth_alone[0, 0, 16, 16].item() == pytest.approx(6.5, abs=1e-4)


def test_a_yawed_box_face():
    size, h, D, hz, yaw = (33, 33), 1.0, 6.0, 0.6, 30.0
    box = {"type": "box", "center": (0.0, h, D), "half": (0.8, 0.8, hz), "yaw_deg": yaw}
    _, seg, depth, normal = render_scene_spec(size, [box], camera_height=h, pitch_deg=0.0)
    a = math.radians(yaw)
    assert seg[0, 16, 16] == BOX
    assert depth[0, 0, 16, 16].item() == pytest.approx(D - hz / math.cos(a), abs=1e-4)
    # the box frame's −z face, turned by the yaw (documented: (x, z) → (x cos a + z sin a, z cos a − x sin a))
    assert torch.allclose(normal[0, :, 16, 16], torch.tensor([-math.sin(a), 0.0, -math.cos(a)]), atol=1e-4)


def test_a_cylinder_side_and_top():
    size, h = (33, 33), 1.0
    cyl = {"type": "cylinder", "base": (0.0, 0.0, 5.0), "radius": 0.5, "height": 1.5}
    _, seg, depth, normal = render_scene_spec(size, [cyl], camera_height=h, pitch_deg=0.0)
    assert seg[0, 16, 16] == CYLINDER and depth[0, 0, 16, 16].item() == pytest.approx(4.5, abs=1e-4)
    assert torch.allclose(normal[0, :, 16, 16], torch.tensor([0.0, 0.0, -1.0]), atol=1e-4)
    # seen from above (camera 4 m high looking down), the top cap's normal is up and its points at y = 1.5
    pitch, cyl = 35.0, {"type": "cylinder", "base": (0.0, 0.0, 3.5), "radius": 0.5, "height": 1.5}
    _, seg, depth, normal = render_scene_spec(size, [cyl], camera_height=4.0, pitch_deg=pitch, wall=20.0)
    basis = camera_basis(pitch, 0.0)
    world = back_project(depth[0], size) @ basis + np.array([0.0, 4.0, 0.0])
    n = normal[0].permute(1, 2, 0).numpy()
    mask = (seg[0] == CYLINDER).numpy()
    top = np.abs(world[..., 1] - 1.5) < 1e-4
    assert (mask & top).sum() > 20
    assert np.abs(n[mask & top] - basis @ np.array([0.0, 1.0, 0.0])).max() < 1e-4
    side = mask & ~top
    radial = world[side] - np.array([0.0, 0.0, 3.5])
    assert np.abs(np.hypot(radial[:, 0], radial[:, 2]) - 0.5).max() < 1e-3


def test_the_cast_shadow_is_where_the_sphere_blocks_the_light():
    size, h = (48, 48), 1.5
    centre, r = np.array([0.0, 0.6, 4.0]), 0.6
    light = np.array([1.0, 1.0, -0.5]) / np.linalg.norm([1.0, 1.0, -0.5])
    image, seg, depth, _ = render_scene_spec(size, [{"type": "sphere", "center": tuple(centre), "radius": r}],
                                             camera_height=h, pitch_deg=25.0, light_dir=tuple(light),
                                             ambient=0.3, floor_colour=(0.6, 0.6, 0.6))
    basis = camera_basis(25.0, 0.0)
    world = back_project(depth[0], size) @ basis + np.array([0.0, h, 0.0])
    floor = (seg[0] == FLOOR).numpy()
    # analytic: does the ray from the floor point towards the light meet the sphere?
    q = world[floor] - centre
    b = q @ light
    blocked = (b * b - ((q * q).sum(1) - r * r) > 0) & (b < 0)
    brightness = image[0, 0].numpy()[floor]
    assert blocked.sum() > 10 and (~blocked).sum() > 100
    lit_value, dark_value = np.median(brightness[~blocked]), np.median(brightness[blocked])
    assert dark_value < 0.8 * lit_value
    # a flat floor under a directional light: exactly two floor colours (up to rounding)
    agree = np.where(blocked, np.abs(brightness - dark_value) < 1e-4, np.abs(brightness - lit_value) < 1e-4)
    assert agree.mean() > 0.98
