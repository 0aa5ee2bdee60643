"""Agr-Rand (Mansilla et al., ICCV 2021): agreeing coordinates are the sum, conflicting ones are
σ·N(0, 1) with σ the mean magnitude of the kept components; draws from the weighting's own
seeded generator, reproducible per seed and across a save/load of its state (and a resumed run)."""
import io
import math

import pytest
import torch

from mtl_platform import registry, session
from mtl_platform.checkpoint import load
from mtl_platform.contracts import Needs
from mtl_platform_plugins.weightings.agr_rand import AgrRand, conflict_scale
from mtl_platform_plugins.weightings.agr_sum import agreement

from conftest import InterruptAt, run_dirs

pytestmark = pytest.mark.usefixtures("one_thread")

TASKS = ["a", "b", "c"]

# the Agr-Sum test's columns: all positive, all negative, mixed, a zero beside two positives,
# a zero beside opposite signs, all zero, a zero beside two negatives
J = [[1.0, -2.0, 3.0, 0.0, 0.0, 0.0, -1.5],
     [2.0, -0.5, -1.0, 2.0, 4.0, 0.0, 0.0],
     [0.5, -1.0, 2.0, 1.0, -1.0, 0.0, -0.5]]


def standard_normals(seed, n, dtype):
    return torch.randn(n, generator=torch.Generator().manual_seed(seed), dtype=dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_hand_computed_vector_with_zeros_ignored(dtype):
    """Agreeing: columns 0, 1, 3, 5, 6 (sums 3.5, -3.5, 3, 0, -2); σ over the non-zero ones:
    (3.5 + 3.5 + 3 + 2) / 4 = 3; columns 2 and 4 are 3·ε_2 and 3·ε_4 (ε the seed's draws)."""
    jac = torch.tensor(J, dtype=dtype)
    weighting = AgrRand(TASKS, seed=11)
    out = weighting.weights(torch.ones(3, dtype=dtype), jacobian=jac)
    eps = standard_normals(11, 7, dtype)
    expected = torch.tensor([3.5, -3.5, 3 * eps[2], 3.0, 3 * eps[4], 0.0, -2.0], dtype=dtype)
    assert out.dtype == dtype
    torch.testing.assert_close(out, expected, rtol=0, atol=4 * torch.finfo(dtype).eps)
    assert out[[0, 1, 3, 5, 6]].tolist() == [3.5, -3.5, 3.0, 0.0, -2.0]     # exactly the sums


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_hand_computed_vector_with_zeros_as_conflicts_the_authors_rule(dtype):
    """Agreeing: columns 0 and 1 only, σ = 3.5; the other five (the all-zero one too) get noise."""
    jac = torch.tensor(J, dtype=dtype)
    out = AgrRand(TASKS, zeros="conflict", seed=11).weights(None, jacobian=jac)
    eps = standard_normals(11, 7, dtype)
    expected = torch.cat([torch.tensor([3.5, -3.5], dtype=dtype), 3.5 * eps[2:]])
    torch.testing.assert_close(out, expected, rtol=0, atol=8 * torch.finfo(dtype).eps)
    assert out[:2].tolist() == [3.5, -3.5]


def test_scale_ignores_all_zero_columns_and_is_zero_with_no_agreement():
    jac = torch.tensor(J, dtype=torch.float64)
    assert conflict_scale(jac, agreement(jac)).item() == 3.0
    assert conflict_scale(jac, agreement(jac, "conflict")).item() == 3.5
    opposed = torch.tensor([[1.0, -2.0], [-1.0, 2.0]], dtype=torch.float64)
    assert conflict_scale(opposed, agreement(opposed)).item() == 0.0
    out = AgrRand(["a", "b"], seed=0).weights(None, jacobian=opposed)
    assert out.tolist() == [0.0, 0.0]                      # no scale to match: Agr-Sum's answer


def test_conflicting_components_are_normal_with_the_stated_scale():
    """20 000 conflicting coordinates beside agreeing ones whose sums have mean magnitude 2:
    the conflicting values have mean ≈ 0, std ≈ 2 and the normal's 1σ/2σ mass (loose bounds,
    fixed seed); the agreeing ones are exactly the sums."""
    n = 20_000
    agreeing = torch.cat([torch.full((3, n // 2), 0.5), torch.full((3, n // 2), -0.5)], 1)
    agreeing[0] *= 2                                          # sums ±2.0 (1.0 + 0.5 + 0.5)
    conflicting = torch.tensor([[1.0], [-1.0], [0.5]]).repeat(1, n)
    jac = torch.cat([agreeing, conflicting], 1).double()
    out = AgrRand(TASKS, seed=3).weights(None, jacobian=jac)
    assert torch.equal(out[:n], jac[:, :n].sum(0))
    x = out[n:] / 2.0
    assert abs(x.mean().item()) < 5 / math.sqrt(n)
    assert abs(x.std().item() - 1) < 0.03
    assert abs((x.abs() < 1).double().mean().item() - 0.6827) < 0.015
    assert abs((x.abs() < 2).double().mean().item() - 0.9545) < 0.01


def test_draws_are_reproducible_per_seed_and_ignore_the_global_generator():
    jac = torch.tensor(J, dtype=torch.float64)
    first = AgrRand(TASKS, seed=5)
    torch.manual_seed(0)
    a = [first.weights(None, jacobian=jac) for _ in range(3)]
    before = torch.get_rng_state()
    second = AgrRand(TASKS, seed=5)
    torch.manual_seed(123)
    torch.rand(10)                                            # other uses of the global generator
    b = [second.weights(None, jacobian=jac) for _ in range(3)]
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a[0], a[1])                        # fresh draws every call
    other = AgrRand(TASKS, seed=6).weights(None, jacobian=jac)
    assert not torch.equal(other, a[0])
    torch.manual_seed(0)
    AgrRand(TASKS, seed=5).weights(None, jacobian=jac)
    assert torch.equal(torch.get_rng_state(), before)         # the global generator is untouched


def test_a_null_seed_is_torchs_initial_seed_when_built():
    jac = torch.tensor(J, dtype=torch.float64)
    torch.manual_seed(42)
    implicit = AgrRand(TASKS)
    torch.manual_seed(7)                                      # later reseeding does not matter
    assert torch.equal(implicit.weights(None, jacobian=jac), AgrRand(TASKS, seed=42).weights(None, jacobian=jac))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_state_round_trips_through_a_weights_only_checkpoint(dtype):
    jac = torch.tensor(J, dtype=dtype)
    original = AgrRand(TASKS, seed=9)
    for _ in range(2):
        original.weights(None, jacobian=jac)
    buffer = io.BytesIO()
    torch.save(original.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    fresh = AgrRand(TASKS, seed=1)
    fresh.load_state_dict(state)
    for _ in range(3):
        assert torch.equal(fresh.weights(None, jacobian=jac), original.weights(None, jacobian=jac))


def test_state_saved_before_any_draw_restores_the_seed():
    jac = torch.tensor(J, dtype=torch.float64)
    fresh = AgrRand(TASKS, seed=1)
    fresh.load_state_dict(AgrRand(TASKS, seed=9).state_dict())
    assert torch.equal(fresh.weights(None, jacobian=jac), AgrRand(TASKS, seed=9).weights(None, jacobian=jac))


def test_registered_as_a_jacobian_gradient_method():
    cls = registry.load(builtin_only=True)[0].get("weighting", "agr_rand").cls
    assert cls is AgrRand and cls.needs is Needs.JACOBIAN and cls.scales_heads is False
    assert cls.promises == ()


def test_a_resumed_run_continues_bit_for_bit(write_config, tmp_path):
    """Interrupted mid-epoch and resumed, the run equals the uninterrupted one: the generator's
    state travels in the checkpoint (without it the resumed draws restart from the seed)."""
    quiet = {"progress": False, "echo": lambda *a, **k: None}
    cfg = write_config({"train.epochs": 2, "train.checkpoint_every": 3, "weighting": "agr_rand"})
    full = session.train(cfg, **quiet)
    (full_dir,) = run_dirs(tmp_path / "runs")
    with pytest.raises(KeyboardInterrupt):
        session.train(cfg, extra_plugins=[InterruptAt(9)], **quiet)
    cut_dir = next(d for d in run_dirs(tmp_path / "runs") if d != full_dir)
    assert load(cut_dir / "checkpoint.pt")["weighting"]["_extra_state"]["seed"] == 0   # train.seed
    session.train(resume=cut_dir, **quiet)
    a, b = load(full_dir / "model.pt"), load(cut_dir / "model.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
