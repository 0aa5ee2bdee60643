"""GradDrop (Chen et al., NeurIPS 2020): one sign per coordinate, the plain sum where signs
agree, the positive side kept with probability purity, the leak, reproducibility and
permutation invariance."""
import pytest
import torch

from mtl_platform.errors import UserError
from mtl_platform.gradients.combine import call_weighting
from mtl_platform_plugins.weightings.graddrop import GradDrop

from staple_weighting_cases import D, tasks


def test_graddrop_keeps_one_sign_per_coordinate():
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    jac = torch.randn(5, 200, generator=gen, dtype=D)
    out, _ = call_weighting(GradDrop(tasks(5)), torch.ones(5, dtype=D), jac)
    positive, negative = jac.clamp_min(0).sum(0), jac.clamp_max(0).sum(0)
    took_positive = out == positive
    assert (took_positive | (out == negative)).all()
    assert took_positive.any() and (~took_positive).any()
    kept = torch.where(took_positive, jac.clamp_min(0), jac.clamp_max(0))
    assert ((kept * out) >= 0).all()                                # every kept part agrees in sign


def test_graddrop_is_the_plain_sum_where_signs_agree():
    gen = torch.Generator().manual_seed(1)
    mags = torch.rand(4, 50, generator=gen, dtype=D) + 0.1
    signs = torch.where(torch.rand(50, generator=gen) < 0.5, -1.0, 1.0).to(D)
    jac = mags * signs
    jac[:, :5] = 0                                                  # Σ|g| = 0: a zero update
    for seed in range(5):
        torch.manual_seed(seed)
        out, _ = call_weighting(GradDrop(tasks(4)), torch.ones(4, dtype=D), jac)
        assert torch.equal(out, jac.sum(0))


def test_graddrop_keeps_the_positive_side_with_probability_purity():
    torch.manual_seed(0)
    n = 20000
    jac = torch.tensor([[3.0], [-1.0]], dtype=D).expand(2, n)       # P = ½(1 + 2/4) = 0.75
    out, _ = call_weighting(GradDrop(["a", "b"]), torch.ones(2, dtype=D), jac)
    assert abs((out == 3.0).double().mean().item() - 0.75) < 0.015
    assert ((out == 3.0) | (out == -1.0)).all()


def test_graddrop_leak_reproducibility_and_permutation_invariance():
    gen = torch.Generator().manual_seed(2)
    jac = torch.randn(6, 40, generator=gen, dtype=D)
    torch.manual_seed(3)
    pure, _ = call_weighting(GradDrop(tasks(6)), torch.ones(6, dtype=D), jac)
    torch.manual_seed(3)
    again, _ = call_weighting(GradDrop(tasks(6)), torch.ones(6, dtype=D), jac)
    assert torch.equal(pure, again)
    torch.manual_seed(3)
    shuffled, _ = call_weighting(GradDrop(tasks(6)), torch.ones(6, dtype=D), jac[torch.randperm(6, generator=gen)])
    assert torch.allclose(shuffled, pure, atol=1e-12)
    torch.manual_seed(3)
    half, _ = call_weighting(GradDrop(tasks(6), leak=0.5), torch.ones(6, dtype=D), jac)
    assert torch.allclose(half, 0.5 * jac.sum(0) + 0.5 * pure)
    full, _ = call_weighting(GradDrop(tasks(6), leak=1.0), torch.ones(6, dtype=D), jac)
    assert torch.allclose(full, jac.sum(0))
    with pytest.raises(UserError):
        GradDrop(tasks(2), leak=1.5)
