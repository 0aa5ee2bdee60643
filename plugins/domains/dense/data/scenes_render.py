"""A vectorised ray caster for procedural 3-D scenes: SYNTHETIC images with exact dense labels.

Nothing here comes from real data. Each image shows a floor (the plane y = 0) and a back wall
(the plane z = ``wall``, facing the camera) with a few random primitives standing on the floor:
spheres, yaw-rotated boxes and vertical cylinders. One ray per pixel centre is intersected
analytically with every surface; the nearest hit gives, all from the same hit:

* the class id (:data:`CLASSES`: 0 floor, 1 wall, 2 sphere, 3 box, 4 cylinder; −1 = no hit);
* the depth: the hit's z coordinate in the camera frame, in metres (0 = no hit);
* the surface normal in the camera frame, unit length, facing the camera (n · ray < 0);
  all-zero = no hit;
* the colour: albedo × (ambient + (1 − ambient) · max(0, n · l) · unshadowed), where l is a
  random directional light and "unshadowed" comes from a second ray cast towards the light
  (objects cast shadows on the floor, the wall and each other); albedo is a per-surface colour,
  optionally modulated by a 3-D checker texture, then gamma (1/2.2) and per-pixel Gaussian
  noise, clipped to [0, 1].

Colours are drawn for every surface — floor and wall included — from one hue/saturation/value
distribution, independently of the surface's class, so colour alone does not tell the class.

Frames and units. World: metres, y up, the floor is y = 0, the camera stands at
(0, ``camera_height``, 0) and the wall is the plane z = ``wall``. Camera frame: x right, y up,
z forward along the optical axis (a right-up-forward frame; image rows grow downwards, so
pixel row i has camera y ∝ −(i + 0.5 − H/2)). The camera is yawed by ``yaw`` about the world
y axis (positive turns towards +x) and pitched down by ``pitch``: forward =
(sin yaw · cos pitch, −sin pitch, cos yaw · cos pitch). The horizontal field of view is
:data:`HFOV_DEG`; pixels are square, so the ray of pixel (i, j) is :func:`pixel_rays` (camera
frame, z component 1, so the ray parameter of a hit *is* its depth).

In the random scenes of :func:`sample_scenes` the camera looks down at the floor and every
ray meets the floor or the wall (the wall closes the scene): every pixel is labelled and has
a valid depth and normal. :func:`render_scene_spec` renders a hand-specified scene, where a
camera looking up or a scene without a wall can leave pixels unhit.

Everything is batched over images and pixels (no per-pixel Python loop); the only Python
loops run over object slots and primitive types. Random draws come from the caller's
``torch.Generator``, so a scene set is a pure function of the generator's seed.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import Sequence

import torch
from torch import Tensor

#: class names by id; the segmentation target holds these ids (−1 = no surface hit)
CLASSES = ("floor", "wall", "sphere", "box", "cylinder")
NUM_CLASSES = len(CLASSES)
FLOOR, WALL, SPHERE, BOX, CYLINDER = range(NUM_CLASSES)
#: the primitive classes an object slot can hold
OBJECT_CLASSES = (SPHERE, BOX, CYLINDER)
#: horizontal field of view of the pinhole camera, in degrees
HFOV_DEG = 60.0
#: per-channel mean and standard deviation of the [0, 1] images of :func:`sample_scenes`
#: (measured on 4,000 images at 64 × 64, generator seed 0); ``normalize=True`` maps images
#: to (image − mean) / std, roughly zero mean and unit variance per channel
IMAGE_MEAN = (0.396, 0.394, 0.390)
IMAGE_STD = (0.207, 0.209, 0.207)
#: images rendered at once (bounds the memory of the intermediate tensors)
CHUNK = 64

_EPS = 1e-4        # smallest accepted ray parameter (m, for unit-ish rays)
_OFFSET = 1e-3     # shadow rays start this far off the surface, along its normal
_INF = float("inf")


@dataclass
class SceneBatch:
    """Parameters of ``n`` scenes with up to ``K`` objects each (tensors, ``n`` leading).

    Surfaces are indexed 0 = floor, 1 = wall, 2 + k = object slot k; ``albedo``,
    ``tex_scale`` and ``tex_contrast`` are per surface. ``obj_type`` holds a class id from
    :data:`OBJECT_CLASSES` or −1 for an empty slot. ``obj_pos``: a sphere's or box's centre,
    a cylinder's base centre (world, m). ``obj_size``: sphere (r, r, r); box half-extents
    (x, y, z) before the yaw; cylinder (radius, height, radius). ``obj_yaw``: a box's rotation
    about the vertical axis (rad). ``wall``: the wall plane's world z (``inf``: no wall).
    ``light_dir``: unit world direction towards the light. ``tex_contrast`` 1 means a plain
    surface, c < 1 a 3-D checker of cell ``tex_scale`` (m) whose dark cells are darkened by c.
    """

    camera_height: Tensor   # (n,)
    pitch: Tensor           # (n,) rad, positive looks down
    yaw: Tensor             # (n,) rad
    wall: Tensor            # (n,)
    light_dir: Tensor       # (n, 3)
    light_colour: Tensor    # (n, 3)
    ambient: Tensor         # (n,)
    obj_type: Tensor        # (n, K) int64
    obj_pos: Tensor         # (n, K, 3)
    obj_size: Tensor        # (n, K, 3)
    obj_yaw: Tensor         # (n, K)
    albedo: Tensor          # (n, K + 2, 3) linear RGB
    tex_scale: Tensor       # (n, K + 2)
    tex_contrast: Tensor    # (n, K + 2)
    noise_std: Tensor       # (n,) std of the per-pixel noise added after gamma

    def __len__(self) -> int:
        return len(self.camera_height)

    def slice(self, start: int, stop: int) -> "SceneBatch":
        return replace(self, **{f.name: getattr(self, f.name)[start:stop] for f in fields(self)})


# ---------------------------------------------------------------------------------------------
# colours and random scenes

def hsv_to_rgb(h: Tensor, s: Tensor, v: Tensor) -> Tensor:
    """HSV in [0, 1] → RGB in [0, 1], stacked on a new last dimension."""
    out = []
    for n in (5.0, 3.0, 1.0):
        k = torch.remainder(n + h * 6.0, 6.0)
        out.append(v - v * s * torch.clamp(torch.minimum(k, 4.0 - k), 0.0, 1.0))
    return torch.stack(out, dim=-1)


def _camera_basis(pitch: Tensor, yaw: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """World-frame right, up and forward unit vectors, each (n, 3)."""
    sp, cp, sy, cy = torch.sin(pitch), torch.cos(pitch), torch.sin(yaw), torch.cos(yaw)
    right = torch.stack([cy, torch.zeros_like(cy), -sy], dim=-1)
    up = torch.stack([sy * sp, cp, cy * sp], dim=-1)
    forward = torch.stack([sy * cp, -sp, cy * cp], dim=-1)
    return right, up, forward


def _footprint(obj_type: Tensor, size: Tensor) -> Tensor:
    """Radius of a vertical cylinder around the object's axis that contains it (m)."""
    box = torch.sqrt(size[..., 0] ** 2 + size[..., 2] ** 2)
    return torch.where(obj_type == BOX, box, size[..., 0])


def sample_scenes(n: int, generator: torch.Generator, max_objects: int = 4,
                  min_objects: int = 1, candidates: int = 8) -> SceneBatch:
    """``n`` random scenes, drawn from ``generator`` only.

    Camera: height U[1.3, 1.8] m, pitch U[12°, 25°] down, yaw U[−20°, 20°]; wall at
    z ∈ U[6, 10] m. Objects: ``min_objects``..``max_objects`` per scene (uniform), type uniform
    over sphere/box/cylinder; sphere radius U[0.3, 0.7]; box half-extents U[0.25, 0.6]
    (horizontal) × U[0.2, 0.65] (vertical) with yaw U[0, 90°); cylinder radius U[0.2, 0.5],
    height U[0.5, 1.6]. Each stands on the floor in front of the camera (2 m up to 70 % of
    the way to the wall, within ±80 % of the half field of view) and inside the wall; of
    ``candidates`` positions the first that does not overlap an earlier object is used — an
    object with none is dropped. Colours: hue U[0, 1), saturation U[0.25, 0.9], value
    U[0.35, 1] for every surface; half the surfaces get a checker (cell U[0.15, 0.65] m,
    contrast U[0.45, 0.85]). Light: elevation U[30°, 70°], azimuth within ±60° of the camera
    side (so the floor and the wall are lit), ambient U[0.15, 0.35], slightly tinted.
    """
    g = generator
    K = int(max_objects)
    if K < 0 or not 0 <= min_objects <= max(K, 0):
        raise ValueError(f"need 0 <= min_objects <= max_objects, got {min_objects}, {max_objects}")

    def u(*shape):
        return torch.rand(shape, generator=g)

    def between(lo, hi, *shape):
        return lo + (hi - lo) * u(*shape)

    camera_height = between(1.3, 1.8, n)
    pitch = torch.deg2rad(between(12.0, 25.0, n))
    yaw = torch.deg2rad(between(-20.0, 20.0, n))
    wall = between(6.0, 10.0, n)

    count = torch.randint(min_objects, K + 1, (n,), generator=g)
    obj_type = torch.tensor(OBJECT_CLASSES)[torch.randint(0, len(OBJECT_CLASSES), (n, K), generator=g)]
    obj_type = torch.where(torch.arange(K) < count[:, None], obj_type, torch.full_like(obj_type, -1))
    sphere_r = between(0.3, 0.7, n, K)
    box_half = torch.stack([between(0.25, 0.6, n, K), between(0.2, 0.65, n, K), between(0.25, 0.6, n, K)], -1)
    cyl_r, cyl_h = between(0.2, 0.5, n, K), between(0.5, 1.6, n, K)
    obj_size = torch.where((obj_type == SPHERE)[..., None], sphere_r[..., None].expand(n, K, 3),
                           torch.where((obj_type == BOX)[..., None], box_half,
                                       torch.stack([cyl_r, cyl_h, cyl_r], -1)))
    obj_yaw = torch.where(obj_type == BOX, between(0.0, math.pi / 2, n, K), torch.zeros(n, K))
    lift = torch.where(obj_type == CYLINDER, torch.zeros(n, K), obj_size[..., 1])  # centre height

    # positions: `candidates` draws per slot in the camera's horizontal frame
    foot = _footprint(obj_type, obj_size)                                  # (n, K)
    far = (0.7 * wall)[:, None, None]
    dist = 2.0 + (far - 2.0).clamp_min(0.0) * u(n, K, candidates)
    lateral = (2 * u(n, K, candidates) - 1) * 0.8 * dist * math.tan(math.radians(HFOV_DEG / 2))
    sy, cy = torch.sin(yaw)[:, None, None], torch.cos(yaw)[:, None, None]
    cand_x = dist * sy + lateral * cy
    cand_z = dist * cy - lateral * sy
    cand_z = torch.minimum(cand_z, wall[:, None, None] - foot[..., None] - 0.05)
    pos_x, pos_z = torch.zeros(n, K), torch.zeros(n, K)
    for k in range(K):
        free = torch.ones(n, candidates, dtype=torch.bool)
        for j in range(k):
            gap = torch.hypot(cand_x[:, k] - pos_x[:, j:j + 1], cand_z[:, k] - pos_z[:, j:j + 1])
            clash = (gap < foot[:, k:k + 1] + foot[:, j:j + 1] + 0.05) & (obj_type[:, j:j + 1] >= 0)
            free &= ~clash
        first = torch.argmax(free.to(torch.int8), dim=1)                   # first free candidate
        found = free.any(dim=1)
        pos_x[:, k] = cand_x[:, k].gather(1, first[:, None])[:, 0]
        pos_z[:, k] = cand_z[:, k].gather(1, first[:, None])[:, 0]
        obj_type[:, k] = torch.where(found, obj_type[:, k], torch.full_like(obj_type[:, k], -1))
    obj_pos = torch.stack([pos_x, lift, pos_z], -1)

    S = K + 2
    rgb = hsv_to_rgb(u(n, S), between(0.25, 0.9, n, S), between(0.35, 1.0, n, S))
    albedo = rgb ** 2.2
    checker = u(n, S) < 0.5
    tex_contrast = torch.where(checker, between(0.45, 0.85, n, S), torch.ones(n, S))
    tex_scale = between(0.15, 0.65, n, S)

    elevation = torch.deg2rad(between(30.0, 70.0, n))
    azimuth = torch.deg2rad(between(-60.0, 60.0, n))
    light_dir = torch.stack([torch.cos(elevation) * torch.sin(azimuth), torch.sin(elevation),
                             -torch.cos(elevation) * torch.cos(azimuth)], -1)
    light_colour = between(0.9, 1.1, n, 3)
    ambient = between(0.15, 0.35, n)
    noise_std = torch.full((n,), 0.02)
    return SceneBatch(camera_height, pitch, yaw, wall, light_dir, light_colour, ambient, obj_type,
                      obj_pos, obj_size, obj_yaw, albedo, tex_scale, tex_contrast, noise_std)


# ---------------------------------------------------------------------------------------------
# ray–primitive intersections: components as separate tensors, broadcasting; t = inf on a miss

def _first_positive(t0: Tensor, t1: Tensor, hit: Tensor) -> Tensor:
    """The smaller root above ``_EPS`` (t0 <= t1), or inf."""
    t = torch.where(t0 > _EPS, t0, torch.where(t1 > _EPS, t1, torch.full_like(t1, _INF)))
    return torch.where(hit, t, torch.full_like(t, _INF))


def _safe(d: Tensor) -> Tensor:
    """``d`` with exact zeros replaced by a tiny number (for plane and slab divisions)."""
    return torch.where(d == 0, torch.full_like(d, 1e-12), d)


def intersect_sphere(o, d, aa, centre, radius) -> Tensor:
    """``o``, ``d``: (x, y, z) tuples; ``aa`` = d · d; ``centre`` (x, y, z); ``radius``."""
    qx, qy, qz = o[0] - centre[0], o[1] - centre[1], o[2] - centre[2]
    b = qx * d[0] + qy * d[1] + qz * d[2]
    c = qx * qx + qy * qy + qz * qz - radius * radius
    disc = b * b - aa * c
    s = torch.sqrt(disc.clamp_min(0.0))
    return _first_positive((-b - s) / aa, (-b + s) / aa, disc >= 0)


def _to_local(x: Tensor, z: Tensor, cos: Tensor, sin: Tensor) -> tuple[Tensor, Tensor]:
    """World → box frame for a box rotated by yaw: the inverse of :func:`_to_world`."""
    return cos * x - sin * z, sin * x + cos * z


def _to_world(x: Tensor, z: Tensor, cos: Tensor, sin: Tensor) -> tuple[Tensor, Tensor]:
    return cos * x + sin * z, -sin * x + cos * z


def intersect_box(o, d, centre, half, yaw) -> Tensor:
    """Slab test in the box's frame; ``half`` (x, y, z) half-extents, ``yaw`` about y."""
    cos, sin = torch.cos(yaw), torch.sin(yaw)
    ox, oz = _to_local(o[0] - centre[0], o[2] - centre[2], cos, sin)
    dx, dz = _to_local(d[0], d[2], cos, sin)
    tmin = tmax = None
    for lo, ld, h in ((ox, dx, half[0]), (o[1] - centre[1], d[1], half[1]), (oz, dz, half[2])):
        inv = 1.0 / _safe(ld)
        t1, t2 = (-h - lo) * inv, (h - lo) * inv
        near, far = torch.minimum(t1, t2), torch.maximum(t1, t2)
        tmin = near if tmin is None else torch.maximum(tmin, near)
        tmax = far if tmax is None else torch.minimum(tmax, far)
    return _first_positive(tmin, tmax, tmax >= tmin)


def intersect_cylinder(o, d, base, radius, height) -> tuple[Tensor, Tensor]:
    """A vertical capped cylinder from ``base`` (x, y, z) up by ``height``.

    Returns (t, part) with part 0 = side, 1 = top cap, 2 = bottom cap."""
    qx, qy, qz = o[0] - base[0], o[1] - base[1], o[2] - base[2]
    a = d[0] * d[0] + d[2] * d[2]
    b = qx * d[0] + qz * d[2]
    c = qx * qx + qz * qz - radius * radius
    disc = b * b - a * c
    ok = (disc >= 0) & (a > 1e-12)
    a_safe = torch.where(a > 1e-12, a, torch.ones_like(a))
    s = torch.sqrt(disc.clamp_min(0.0))
    inf = torch.full_like(disc, _INF)
    t = inf
    for root in ((-b - s) / a_safe, (-b + s) / a_safe):
        y = qy + root * d[1]
        valid = ok & (root > _EPS) & (y >= 0) & (y <= height)
        t = torch.where(valid & (root < t), root, t)
    part = torch.zeros(t.shape, dtype=torch.int64)
    inv = 1.0 / _safe(d[1])
    for code, level in ((1, height), (2, 0.0)):
        tc = (level - qy) * inv
        x, z = qx + tc * d[0], qz + tc * d[2]
        valid = (tc > _EPS) & (x * x + z * z <= radius * radius) & (tc < t)
        t = torch.where(valid, tc, t)
        part = torch.where(valid, torch.full_like(part, code), part)
    return t, part


def _plane(o_axis: Tensor, d_axis: Tensor, level) -> Tensor:
    t = (level - o_axis) / _safe(d_axis)
    return torch.where(t > _EPS, t, torch.full_like(t, _INF))  # NaN (inf − inf) also → inf


# ---------------------------------------------------------------------------------------------
# rendering

def pixel_rays(image_size: Sequence[int], hfov_deg: float = HFOV_DEG) -> Tensor:
    """(H, W, 3) camera-frame rays through the pixel centres, z component 1 (x right, y up)."""
    H, W = int(image_size[0]), int(image_size[1])
    f = (W / 2) / math.tan(math.radians(hfov_deg) / 2)
    x = (torch.arange(W, dtype=torch.float32) + 0.5 - W / 2) / f
    y = -(torch.arange(H, dtype=torch.float32) + 0.5 - H / 2) / f
    return torch.stack([x[None, :].expand(H, W), y[:, None].expand(H, W), torch.ones(H, W)], -1)


def _gather(table: Tensor, index: Tensor) -> Tensor:
    """``table`` (B, S) or (B, S, C) indexed per pixel by ``index`` (B, P) → (B, P) or (B, P, C)."""
    if table.dim() == 2:
        return table.gather(1, index)
    return table.gather(1, index[..., None].expand(*index.shape, table.shape[-1]))


def _objects_pass(sc: SceneBatch, o, d, aa, on_hit) -> None:
    """Intersect every object slot with the rays; ``on_hit(idx, slot, t, part)`` per group."""
    K = sc.obj_type.shape[1]
    for k in range(K):
        for cls in OBJECT_CLASSES:
            idx = torch.nonzero(sc.obj_type[:, k] == cls).squeeze(1)
            if idx.numel() == 0:
                continue
            oi = tuple(c if c.shape[0] == 1 else c[idx] for c in o)
            di = tuple(c if c.shape[0] == 1 else c[idx] for c in d)
            pos = [sc.obj_pos[idx, k, i][:, None] for i in range(3)]
            size = [sc.obj_size[idx, k, i][:, None] for i in range(3)]
            part = None
            if cls == SPHERE:
                t = intersect_sphere(oi, di, aa if aa.shape[0] == 1 else aa[idx], pos, size[0])
            elif cls == BOX:
                t = intersect_box(oi, di, pos, size, sc.obj_yaw[idx, k][:, None])
            else:
                t, part = intersect_cylinder(oi, di, pos, size[0], size[1])
            on_hit(idx, k, t, part)


def _render_chunk(sc: SceneBatch, rays: Tensor, noise: Tensor | None):
    B = len(sc)
    H, W = rays.shape[:2]
    P = H * W
    right, up, forward = _camera_basis(sc.pitch, sc.yaw)                   # (B, 3)
    r = rays.reshape(1, P, 3)
    d3 = r[..., 0:1] * right[:, None] + r[..., 1:2] * up[:, None] + forward[:, None]  # (B, P, 3)
    d = (d3[..., 0], d3[..., 1], d3[..., 2])
    zero = torch.zeros(B, 1)
    o = (zero, sc.camera_height[:, None], zero)
    aa = d[0] * d[0] + d[1] * d[1] + d[2] * d[2]

    # primary rays: nearest hit
    t_floor = _plane(o[1], d[1], 0.0)
    t_wall = _plane(o[2], d[2], sc.wall[:, None])
    best_t = torch.minimum(t_floor, t_wall)
    surface = torch.where(t_wall < t_floor, 1, 0)                          # (B, P) int64
    cyl_part = torch.zeros(B, P, dtype=torch.int64)

    def keep_nearest(idx, k, t, part):
        current = best_t[idx]
        closer = t < current
        best_t[idx] = torch.where(closer, t, current)
        surface[idx] = torch.where(closer, 2 + k, surface[idx])
        if part is not None:
            cyl_part[idx] = torch.where(closer, part, cyl_part[idx])

    _objects_pass(sc, o, d, aa, keep_nearest)
    hit = torch.isfinite(best_t)
    t = torch.where(hit, best_t, torch.zeros_like(best_t))
    p = (o[0] + t * d[0], o[1] + t * d[1], o[2] + t * d[2])

    # class and per-pixel object parameters
    slot = (surface - 2).clamp_min(0)
    is_obj = surface >= 2
    obj_cls = _gather(sc.obj_type, slot)
    seg = torch.where(is_obj, obj_cls, surface)
    seg = torch.where(hit, seg, torch.full_like(seg, -1))
    pos = _gather(sc.obj_pos, slot)
    size = _gather(sc.obj_size, slot)
    rel = (p[0] - pos[..., 0], p[1] - pos[..., 1], p[2] - pos[..., 2])

    # world normals: floor (0, 1, 0), wall (0, 0, -1), then each primitive from its hit point
    ones, zeros = torch.ones_like(t), torch.zeros_like(t)
    nx, ny, nz = zeros, torch.where(surface == 0, ones, zeros), torch.where(surface == 1, -ones, zeros)
    sph = is_obj & (obj_cls == SPHERE)
    nx, ny, nz = torch.where(sph, rel[0], nx), torch.where(sph, rel[1], ny), torch.where(sph, rel[2], nz)
    yaw = _gather(sc.obj_yaw, slot)
    cos, sin = torch.cos(yaw), torch.sin(yaw)
    lx, lz = _to_local(rel[0], rel[2], cos, sin)
    ux, uy, uz = lx / size[..., 0], rel[1] / size[..., 1], lz / size[..., 2]
    ax, ay, az = ux.abs(), uy.abs(), uz.abs()
    pick_x = (ax >= ay) & (ax >= az)                     # the face: the largest |local / half|
    pick_y = ~pick_x & (ay >= az)
    pick_z = ~pick_x & ~pick_y
    blx = torch.where(pick_x, torch.sign(ux), zeros)
    bly = torch.where(pick_y, torch.sign(uy), zeros)
    blz = torch.where(pick_z, torch.sign(uz), zeros)
    bwx, bwz = _to_world(blx, blz, cos, sin)
    box = is_obj & (obj_cls == BOX)
    nx, ny, nz = torch.where(box, bwx, nx), torch.where(box, bly, ny), torch.where(box, bwz, nz)
    cyl = is_obj & (obj_cls == CYLINDER)
    side = cyl & (cyl_part == 0)
    cap_y = torch.where(cyl_part == 1, ones, -ones)
    nx = torch.where(side, rel[0], torch.where(cyl, zeros, nx))
    nz = torch.where(side, rel[2], torch.where(cyl, zeros, nz))
    ny = torch.where(side, zeros, torch.where(cyl, cap_y, ny))
    norm = torch.sqrt(nx * nx + ny * ny + nz * nz).clamp_min(1e-12)
    facing = torch.where(nx * d[0] + ny * d[1] + nz * d[2] > 0, -1.0, 1.0) / norm
    nx, ny, nz = nx * facing, ny * facing, nz * facing

    # shading with shadow rays towards the light
    L = sc.light_dir
    lx_, ly_, lz_ = L[:, 0:1], L[:, 1:2], L[:, 2:3]
    ndotl = (nx * lx_ + ny * ly_ + nz * lz_).clamp_min(0.0)
    so = (p[0] + _OFFSET * nx, p[1] + _OFFSET * ny, p[2] + _OFFSET * nz)
    shadow_t = torch.full_like(t, _INF)

    def any_hit(idx, k, ts, part):
        shadow_t[idx] = torch.minimum(shadow_t[idx], ts)

    _objects_pass(sc, so, (lx_, ly_, lz_), torch.ones(B, 1), any_hit)
    lit = ndotl * torch.isinf(shadow_t)
    amb = sc.ambient[:, None]
    shade = amb + (1.0 - amb) * lit                                         # (B, P)

    # albedo with the 3-D checker (evaluated just inside the surface, stable on planes)
    albedo = _gather(sc.albedo, surface)                                    # (B, P, 3)
    scale = _gather(sc.tex_scale, surface)
    contrast = _gather(sc.tex_contrast, surface)
    inner = [(p[i] - _OFFSET * n) / scale for i, n in enumerate((nx, ny, nz))]
    cell = (torch.floor(inner[0]) + torch.floor(inner[1]) + torch.floor(inner[2])).remainder(2.0)
    albedo = albedo * torch.where(cell > 0.5, contrast, ones)[..., None]
    radiance = albedo * sc.light_colour[:, None, :] * shade[..., None]
    image = radiance.clamp(0.0, 1.0) ** (1.0 / 2.2)
    image = torch.where(hit[..., None], image, torch.zeros_like(image))
    image = image.permute(0, 2, 1).reshape(B, 3, H, W)
    if noise is not None:
        image = (image + sc.noise_std[:, None, None, None] * noise).clamp(0.0, 1.0)

    # camera-frame normals, depth
    nw = torch.stack([nx, ny, nz], -1)                                      # (B, P, 3)
    ncam = torch.stack([(nw * right[:, None]).sum(-1), (nw * up[:, None]).sum(-1),
                        (nw * forward[:, None]).sum(-1)], 1)                # (B, 3, P)
    ncam = torch.where(hit[:, None], ncam, torch.zeros_like(ncam)).reshape(B, 3, H, W)
    depth = t.reshape(B, 1, H, W)                                           # 0 where no hit
    return image, seg.reshape(B, H, W), depth, ncam


def normalize_images(images: Tensor) -> Tensor:
    """[0, 1] images → (image − :data:`IMAGE_MEAN`) / :data:`IMAGE_STD` per channel."""
    mean = torch.tensor(IMAGE_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGE_STD).view(1, 3, 1, 1)
    return (images - mean) / std


def _with_an_empty_slot(sc: SceneBatch) -> SceneBatch:
    """``sc`` with one empty object slot (the per-pixel gathers need a non-empty table)."""
    n = len(sc)
    return replace(sc, obj_type=torch.full((n, 1), -1, dtype=torch.int64), obj_pos=torch.zeros(n, 1, 3),
                   obj_size=torch.ones(n, 1, 3), obj_yaw=torch.zeros(n, 1),
                   albedo=torch.cat([sc.albedo, torch.zeros(n, 1, 3)], 1),
                   tex_scale=torch.cat([sc.tex_scale, torch.ones(n, 1)], 1),
                   tex_contrast=torch.cat([sc.tex_contrast, torch.ones(n, 1)], 1))


def render(scenes: SceneBatch, image_size: Sequence[int], generator: torch.Generator | None = None,
           normalize: bool = False, chunk: int = CHUNK):
    """Ray-cast ``scenes``; per-pixel noise is drawn from ``generator`` (none without one).

    Returns (images (n, 3, H, W) float32 in [0, 1] — or normalised with ``normalize`` —,
    segmentation (n, H, W) int64, depth (n, 1, H, W) float32 in metres, normals (n, 3, H, W)
    float32 in the camera frame).
    """
    H, W = int(image_size[0]), int(image_size[1])
    n = len(scenes)
    if scenes.obj_type.shape[1] == 0:
        scenes = _with_an_empty_slot(scenes)
    rays = pixel_rays((H, W))
    images = torch.empty(n, 3, H, W)
    seg = torch.empty(n, H, W, dtype=torch.int64)
    depth = torch.empty(n, 1, H, W)
    normals = torch.empty(n, 3, H, W)
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        noise = None if generator is None else torch.randn(stop - start, 3, H, W, generator=generator)
        out = _render_chunk(scenes.slice(start, stop), rays, noise)
        images[start:stop], seg[start:stop], depth[start:stop], normals[start:stop] = out
    if normalize:
        images = normalize_images(images)
    return images, seg, depth, normals


def render_scenes(n: int, image_size: Sequence[int], generator: torch.Generator, max_objects: int = 4,
                  min_objects: int = 1, normalize: bool = False):
    """``n`` random scenes (:func:`sample_scenes`) rendered at ``image_size`` (H, W).

    Returns (images (n, 3, H, W) float32, [0, 1] or normalised; segmentation (n, H, W) int64
    with class ids of :data:`CLASSES`; depth (n, 1, H, W) float32, camera z in metres;
    normals (n, 3, H, W) float32, unit, camera frame, facing the camera). A pure function of
    the generator's state: the scenes are drawn first, then the noise.
    """
    scenes = sample_scenes(n, generator, max_objects=max_objects, min_objects=min_objects)
    return render(scenes, image_size, generator, normalize=normalize)


def render_scene_spec(image_size: Sequence[int], objects: Sequence[dict] = (), *,
                      camera_height: float = 1.5, pitch_deg: float = 20.0, yaw_deg: float = 0.0,
                      wall: float | None = 8.0, light_dir: Sequence[float] = (0.3, 1.0, -0.6),
                      ambient: float = 0.3, floor_colour: Sequence[float] = (0.6, 0.6, 0.6),
                      wall_colour: Sequence[float] = (0.8, 0.8, 0.8), noise_std: float = 0.0,
                      normalize: bool = False):
    """Render one hand-specified scene (n = 1 outputs, as :func:`render_scenes`).

    ``objects``: dicts, world coordinates in metres (camera at (0, ``camera_height``, 0)):
    ``{"type": "sphere", "center": (x, y, z), "radius": r}``,
    ``{"type": "box", "center": (x, y, z), "half": (hx, hy, hz), "yaw_deg": a}``,
    ``{"type": "cylinder", "base": (x, y, z), "radius": r, "height": h}``; each may give a
    ``"colour"`` (linear RGB in [0, 1]; default grey). ``wall=None``: no wall (rays above the
    horizon then hit nothing: class −1, depth 0, normal 0, black). ``light_dir`` points from
    the scene towards the light (normalised here). No texture; noise only if ``noise_std``.
    """
    K = len(objects)
    obj_type = torch.full((1, K), -1, dtype=torch.int64)
    obj_pos, obj_size, obj_yaw = torch.zeros(1, K, 3), torch.zeros(1, K, 3), torch.zeros(1, K)
    albedo = torch.zeros(1, K + 2, 3)
    albedo[0, 0], albedo[0, 1] = torch.tensor(floor_colour), torch.tensor(wall_colour)
    kinds = {"sphere": SPHERE, "box": BOX, "cylinder": CYLINDER}
    for k, spec in enumerate(objects):
        kind = spec["type"]
        if kind not in kinds:
            raise ValueError(f"object {k}: unknown type {kind!r}; types: {', '.join(kinds)}")
        obj_type[0, k] = kinds[kind]
        if kind == "sphere":
            obj_pos[0, k] = torch.tensor(spec["center"], dtype=torch.float32)
            obj_size[0, k] = float(spec["radius"])
        elif kind == "box":
            obj_pos[0, k] = torch.tensor(spec["center"], dtype=torch.float32)
            obj_size[0, k] = torch.tensor(spec["half"], dtype=torch.float32)
            obj_yaw[0, k] = math.radians(float(spec.get("yaw_deg", 0.0)))
        else:
            obj_pos[0, k] = torch.tensor(spec["base"], dtype=torch.float32)
            obj_size[0, k] = torch.tensor([spec["radius"], spec["height"], spec["radius"]], dtype=torch.float32)
        albedo[0, 2 + k] = torch.tensor(spec.get("colour", (0.5, 0.5, 0.5)), dtype=torch.float32)
    light = torch.tensor(light_dir, dtype=torch.float32)
    scene = SceneBatch(
        camera_height=torch.tensor([float(camera_height)]), pitch=torch.tensor([math.radians(pitch_deg)]),
        yaw=torch.tensor([math.radians(yaw_deg)]), wall=torch.tensor([_INF if wall is None else float(wall)]),
        light_dir=(light / light.norm())[None], light_colour=torch.ones(1, 3), ambient=torch.tensor([float(ambient)]),
        obj_type=obj_type, obj_pos=obj_pos, obj_size=obj_size, obj_yaw=obj_yaw, albedo=albedo,
        tex_scale=torch.ones(1, K + 2), tex_contrast=torch.ones(1, K + 2),
        noise_std=torch.tensor([float(noise_std)]))
    generator = torch.Generator().manual_seed(0) if noise_std > 0 else None
    return render(scene, image_size, generator, normalize=normalize)
