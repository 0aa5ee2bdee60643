"""Domain Gradient Equilibrium (spec gradients.md §2.3, §2.6): the spec's worked example, the
pseudocode with explicit vectors over random families, averaging for two tasks and identical
gradients, the persistent state."""
import pytest
import torch

from mtl_platform_plugins.weightings._solvers import other_tasks
from mtl_platform_plugins.weightings.equilibrium import Equilibrium, adjusted_specifics

from seed_weighting_cases import ATOL, D, FAMILIES, TWO_TASK, names, run, t

pytestmark = pytest.mark.usefixtures("one_thread")

J3 = t([1.0, 0.1], [1.0, -0.1], [-2.0, 0.0])


def test_equilibrium_spec_worked_example():
    eq = Equilibrium(names(3))
    gram = J3 @ J3.T
    specific, adjusted = adjusted_specifics(gram, 0.5, other_tasks(3, False, "cpu"))
    s_hat = adjusted @ J3
    assert torch.allclose(specific @ J3, J3, atol=1e-12)  # ḡ = 0, s = g
    assert torch.allclose(s_hat, t([0.019802, 0.198020], [0.019802, -0.198020], [-2.0, 0.0]), atol=ATOL)
    w0 = torch.ones(3, dtype=D)
    residual = w0 @ s_hat
    assert torch.allclose(residual, t(-1.960396, 0.0), atol=ATOL)
    assert torch.allclose(2 * s_hat @ residual, t(-0.0776394, -0.0776394, 7.8415842), atol=ATOL)
    w, g = run(eq, J3)
    assert torch.allclose(eq.w.to(D), t(1.0, 1.0, 0.2158416), atol=ATOL)
    r = J3 - eq.w.to(D)[:, None] * s_hat
    assert torch.allclose(r, t([0.980198, -0.098020], [0.980198, 0.098020], [-1.568317, 0.0]), atol=ATOL)
    assert torch.allclose(g, t(0.392079, 0.0), atol=ATOL)
    assert torch.allclose(g, r.sum(0), atol=1e-12)
    assert torch.allclose(eq.residual_norm.to(D), (eq.w.to(D) @ s_hat).norm(), atol=1e-6)
    eq_mean = Equilibrium(names(3), reduce="mean")
    assert torch.allclose(run(eq_mean, J3)[0], w / 3, atol=1e-12)


def equilibrium_reference(j, w0, alpha=0.5, lr=0.1, steps=1):
    """Spec §2.3 pseudocode with explicit vectors (index order, projecting against the original s_j)."""
    k = j.shape[0]
    gbar = j.mean(0)
    s = j - gbar
    sh = s.clone()
    scale = float((j * j).sum(1).mean())
    for i in range(k):
        for jj in range(k):
            if jj == i or float(s[jj] @ s[jj]) <= 1e-8 * scale:
                continue
            cos = sh[i] @ s[jj] / (sh[i].norm() * s[jj].norm())
            if float(sh[i] @ sh[i]) > 1e-8 * scale and cos > alpha:
                sh[i] = sh[i] - (sh[i] @ s[jj]) / (s[jj] @ s[jj]) * s[jj]
    w = w0.clone()
    for _ in range(steps):
        w = (w - lr * 2 * (sh @ (w @ sh))).clamp(0, 1)
    r = j - w[:, None] * sh
    return r.sum(0), w, sh, gbar


def test_equilibrium_matches_the_pseudocode_and_the_identity_over_random_families():
    for fam, j in FAMILIES:
        k = j.shape[0]
        eq = Equilibrium(names(k), w_steps=3, w_lr=0.05)
        w0 = torch.rand(k, generator=torch.Generator().manual_seed(k), dtype=D)
        eq.w.copy_(w0)
        _, g = run(eq, j)
        ref, w_ref, sh, gbar = equilibrium_reference(j, w0, lr=0.05, steps=3)
        tol = 1e-7 * float(j.abs().max())
        assert torch.allclose(eq.w.to(D), w_ref, atol=1e-6), fam
        assert torch.allclose(g, ref, atol=tol), fam
        # Σ_k r_k = K ḡ − Σ_k w_k ŝ_k (spec §2.6 item 1)
        assert torch.allclose(g, k * gbar - w_ref @ sh, atol=tol), fam


def test_equilibrium_two_tasks_is_averaging():
    for fam, j in TWO_TASK[:10]:
        eq_sum, eq_mean = Equilibrium(["a", "b"]), Equilibrium(["a", "b"], reduce="mean")
        for _ in range(3):
            w, g = run(eq_sum, j)
            assert torch.allclose(w, torch.ones(2, dtype=D), atol=1e-12), fam  # g₁ + g₂ = 2ḡ
            assert torch.allclose(eq_sum.w, torch.ones(2, dtype=D)), fam
            assert torch.allclose(run(eq_mean, j)[0], torch.full((2,), 0.5, dtype=D), atol=1e-12), fam


def test_equilibrium_identical_gradients_is_averaging():
    common = torch.randn(1, 30, dtype=D).repeat(4, 1)
    w, g = run(Equilibrium(names(4)), common)
    assert torch.allclose(w, torch.ones(4, dtype=D), atol=1e-12)  # sum: 4 × the common gradient
    assert torch.allclose(g, 4 * common[0])
    w, g = run(Equilibrium(names(4), reduce="mean"), common)
    assert torch.allclose(w, torch.full((4,), 0.25, dtype=D), atol=1e-12)  # mean: the common gradient
    assert torch.allclose(g, common[0])


def test_equilibrium_state_persists_and_round_trips():
    j = J3
    eq = Equilibrium(names(3))
    run(eq, j)
    first = eq.w.clone()
    run(eq, j)
    assert not torch.equal(eq.w, first)  # persistent: the second step starts from the first's w
    state = eq.state_dict()
    assert set(state) == {"w"}
    fresh = Equilibrium(names(3))
    fresh.load_state_dict(state)
    assert torch.equal(run(fresh, j)[0], run(eq, j)[0])
    restart = Equilibrium(names(3), w_persistent=False)
    assert torch.equal(run(restart, j)[0], run(restart, j)[0])
    assert torch.allclose(restart.w, first)
