"""The SDG domain syntheses (plugins/domains/sdg/synthesis): K synthesised domains of one batch,
each a pure function of the per-sample keys; randaugment equal to torchvision's RandAugment."""
from __future__ import annotations

import math

import pytest
import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from mtl_platform.batches import mix_seed
from mtl_platform.errors import UserError
from mtl_platform.registry import Registry
from mtl_platform_plugins.domains.sdg.contract import Synthesis
from mtl_platform_plugins.domains.sdg.synthesis import register
from mtl_platform_plugins.domains.sdg.synthesis.identity import NoSynthesis, Sources
from mtl_platform_plugins.domains.sdg.synthesis.keys import generators
from mtl_platform_plugins.domains.sdg.synthesis.photometric import Brightness, Rotation
from mtl_platform_plugins.domains.sdg.synthesis.randaugment import RandAugment

pytestmark = pytest.mark.usefixtures("one_thread")

AUGMENTING = (RandAugment, Rotation, Brightness)


def keys(n: int, k: int, epoch: int = 0, seed: int = 0) -> torch.Tensor:
    """The keys a domain would give: one int64 per sample from (seed, epoch, index, k)."""
    return torch.tensor([mix_seed(seed, epoch, i, k) for i in range(n)], dtype=torch.int64)


def batch(n: int = 8, c: int = 3, h: int = 32, w: int = 32) -> torch.Tensor:
    return torch.rand(n, c, h, w, generator=torch.Generator().manual_seed(1))


def test_register_adds_every_synthesis_under_its_sub_kind():
    registry = Registry()
    register(registry)
    assert registry.names("sdg.synthesis") == ["brightness", "plain", "randaugment", "rotation", "sources"]
    assert all(issubclass(c.cls, Synthesis) for c in registry.components("sdg.synthesis"))


@pytest.mark.parametrize("cls", AUGMENTING)
def test_one_synthesised_domain_is_refused_with_a_pointer_to_erm(cls):
    with pytest.raises(UserError) as info:
        cls(k=1)
    assert str(info.value) == ("domain.synthesis.k: got 1, expected ≥ 2 (one synthesised domain is ERM: "
                               "use synthesis: plain)")
    with pytest.raises(UserError, match="domain.synthesis.k"):
        cls(k=0)
    with pytest.raises(UserError, match="domain.synthesis.kk: unknown key"):
        cls(kk=3)


@pytest.mark.parametrize("cls", AUGMENTING)
def test_names_are_one_per_synthesised_domain(cls):
    assert cls().names(["photo"]) == ["aug0", "aug1", "aug2"]
    assert cls(k=5).names(["photo"]) == [f"aug{i}" for i in range(5)]
    assert cls.per_source is False


@pytest.mark.parametrize("cls", AUGMENTING)
@pytest.mark.parametrize("shape", [(3, 32, 32), (1, 20, 28)])
def test_synthesised_domains_are_pure_functions_of_the_keys(cls, shape):
    synthesis = cls(k=3)
    x = batch(8, *shape)
    before = x.clone()
    state = torch.get_rng_state()
    domains = [synthesis.transform(x, k, keys(8, k)) for k in range(3)]
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG is neither read nor advanced
    assert torch.equal(x, before)  # the source batch is not modified in place
    for out in domains:
        assert out.shape == x.shape and out.dtype == x.dtype
        assert out.min() >= 0.0 and out.max() <= 1.0
    for a in range(3):
        for b in range(a + 1, 3):
            assert not torch.equal(domains[a], domains[b])
    again = synthesis.transform(x, 1, keys(8, 1))
    assert torch.equal(again, domains[1])
    # a sample's output depends on its image and key only, not on the rest of the batch (up to
    # float rounding: a convolution's last bit, e.g. RandAugment's Sharpness, can depend on how
    # many images share the call)
    order = torch.tensor([5, 2, 7, 0])
    torch.testing.assert_close(synthesis.transform(x[order], 1, keys(8, 1)[order]), domains[1][order],
                               atol=1e-6, rtol=0)
    later = synthesis.transform(x, 1, keys(8, 1, epoch=1))
    assert not torch.equal(later, domains[1])
    assert (later - domains[1]).abs().amax((1, 2, 3)).gt(0).sum() >= 6  # nearly every sample changes


def blob(size: int = 33, dx: float = 10.0, dy: float = 0.0, sigma: float = 1.5) -> torch.Tensor:
    """A Gaussian spot at (dx, dy) pixels from the image centre, on a black (1, 1, size, size) image."""
    centre = (size - 1) / 2
    y, x = torch.meshgrid(torch.arange(size, dtype=torch.float64), torch.arange(size, dtype=torch.float64),
                          indexing="ij")
    spot = torch.exp(-((x - centre - dx) ** 2 + (y - centre - dy) ** 2) / (2 * sigma ** 2))
    return spot.float().view(1, 1, size, size)


def test_rotation_angles_recovered_from_the_images_lie_in_the_declared_range():
    n, size = 64, 33
    synthesis = Rotation(k=2, degrees=30.0)
    out = synthesis.transform(blob(size).expand(n, 3, size, size).contiguous(), 0, keys(n, 0))
    centre = (size - 1) / 2
    y, x = torch.meshgrid(torch.arange(size, dtype=torch.float64), torch.arange(size, dtype=torch.float64),
                          indexing="ij")
    mass = out[:, 0].double()
    cx = (mass * x).sum((1, 2)) / mass.sum((1, 2)) - centre
    cy = (mass * y).sum((1, 2)) / mass.sum((1, 2)) - centre
    recovered = torch.rad2deg(torch.atan2(-cy, cx))  # counter-clockwise on screen (y points down)
    drawn = synthesis.angles(generators(keys(n, 0), n))
    assert torch.allclose(recovered, drawn, atol=0.5)
    assert recovered.abs().max() <= 30.5
    assert recovered.min() < -20 and recovered.max() > 20  # the whole range is used
    narrow = Rotation(degrees=5.0).angles(generators(keys(n, 0), n))
    assert narrow.abs().max() <= 5.0


def test_rotation_equals_torchvision_rotate_per_image():
    x = batch(6, 3, 24, 30)
    synthesis = Rotation()
    for interpolation, mode, atol in (("bilinear", TF.InterpolationMode.BILINEAR, 1e-5),
                                      ("nearest", TF.InterpolationMode.NEAREST, 0.0)):
        synthesis = Rotation(interpolation=interpolation)
        angles = synthesis.angles(generators(keys(6, 2), 6))
        out = synthesis.transform(x, 2, keys(6, 2))
        ref = torch.stack([TF.rotate(x[i], float(angles[i]), interpolation=mode) for i in range(6)])
        assert torch.allclose(out, ref, atol=atol, rtol=0)


def test_brightness_factors_recovered_from_the_images_lie_in_the_declared_range():
    n = 64
    grey = torch.full((n, 3, 8, 8), 0.5)
    synthesis = Brightness(factor_range=[0.7, 1.3])
    recovered = synthesis.transform(grey, 0, keys(n, 0)).mean((1, 2, 3)) / 0.5
    assert torch.allclose(recovered, synthesis.factors(generators(keys(n, 0), n)).float(), atol=1e-6)
    assert recovered.min() >= 0.7 - 1e-6 and recovered.max() <= 1.3 + 1e-6
    assert recovered.min() < 0.8 and recovered.max() > 1.2
    assert torch.equal(synthesis.transform(torch.ones(2, 1, 4, 4), 0, keys(2, 0)).max(), torch.tensor(1.0))
    with pytest.raises(UserError, match="domain.synthesis.factor_range"):
        Brightness(factor_range=[1.3, 0.7])
    with pytest.raises(UserError, match="domain.synthesis.factor_range"):
        Brightness(factor_range=[-0.1, 0.7])


def test_randaugment_equals_torchvision_randaugment_seeded_with_each_key():
    n = 16
    x = batch(n, 3, 32, 32)
    k = keys(n, 1)
    out = RandAugment(k=2).transform(x, 1, k)
    reference = v2.RandAugment()  # torchvision's defaults: num_ops 2, magnitude 9, 31 bins, nearest
    for i in range(n):
        with torch.random.fork_rng():
            torch.manual_seed(int(k[i]))
            # equal up to the last bit of a convolution (Sharpness) run on one image instead of a group
            torch.testing.assert_close(out[i], reference(x[i]), atol=1e-6, rtol=0)


def test_randaugment_choices_are_torchvisions_op_table_draws():
    n, size = 200, 32
    synthesis = RandAugment(num_ops=3, magnitude=5)
    reference = v2.RandAugment(num_ops=3, magnitude=5)
    recorded: list = []
    apply = reference._apply_image_or_video_transform

    def record(image, op, magnitude, **kwargs):
        recorded[-1].append((op, magnitude))
        return apply(image, op, magnitude, **kwargs)

    reference._apply_image_or_video_transform = record
    image = torch.rand(3, size, size)
    for key in keys(n, 0).tolist():
        recorded.append([])
        with torch.random.fork_rng():
            torch.manual_seed(key)
            reference(image)
    choices = synthesis.choices(generators(keys(n, 0), n), size, size)
    assert choices == recorded
    table = set(v2.RandAugment._AUGMENTATION_SPACE)
    used = {op for sample in choices for op, _ in sample}
    assert used == table and len(table) == 14  # every op of torchvision's table, nothing else
    signs = {op: {math.copysign(1.0, m) for s in choices for o, m in s if o == op} for op in ("Rotate", "ShearX")}
    assert signs == {"Rotate": {1.0, -1.0}, "ShearX": {1.0, -1.0}}


def test_randaugment_refuses_a_magnitude_outside_its_bins():
    with pytest.raises(UserError, match="domain.synthesis.magnitude: got 31, expected < num_magnitude_bins"):
        RandAugment(magnitude=31)


def test_sources_and_none_leave_images_unchanged():
    x = batch(4)
    sources = Sources()
    assert sources.per_source is True
    assert sources.names(["mnist", "svhn"]) == ["mnist", "svhn"]
    assert sources.transform(x, 1, keys(4, 1)) is x
    erm = NoSynthesis()
    assert erm.per_source is False
    assert erm.names(["photo", "art"]) == ["source"]
    assert erm.transform(x, 0, keys(4, 0)) is x
    with pytest.raises(UserError, match="domain.synthesis.k: unknown key"):
        NoSynthesis(k=3)
