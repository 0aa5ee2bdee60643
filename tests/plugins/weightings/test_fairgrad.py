"""FairGrad (Ban & Ji ICML 2024): hand-solved systems Gw = w^{-1/α}, the exact rescaling with the
gradients' scale, the ridge at a Pareto-stationary point."""
import torch

from mtl_platform_plugins.weightings.fairgrad import FairGrad, fair_objective, fair_weights

F64 = torch.float64


def solve(gram, **params):
    fair = FairGrad(["a", "b"][: gram.shape[0]] if gram.shape[0] <= 2 else list("abcdefgh")[: gram.shape[0]], **params)
    return fair.respond(torch.ones(gram.shape[0], dtype=F64), gram=gram), fair


def test_fairgrad_hand_solved_systems():
    # α = 1, G = [[3/4, 1/2], [1/2, 3]]: w = (1, ½) gives Gw = (3/4 + 1/4, 1/2 + 3/2) = (1, 2) = 1/w
    w, fair = solve(torch.tensor([[0.75, 0.5], [0.5, 3.0]], dtype=F64), alpha=1.0, eps=0.0)
    assert torch.allclose(w, torch.tensor([1.0, 0.5], dtype=F64), rtol=1e-13)
    assert fair.residual < 1e-13
    # α = 2, G = [[3/4, 1], [1, 4]]: w = (1, ¼) gives Gw = (3/4 + 1/4, 1 + 1) = (1, 2) = w^{-1/2}
    w, _ = solve(torch.tensor([[0.75, 1.0], [1.0, 4.0]], dtype=F64), alpha=2.0, eps=0.0)
    assert torch.allclose(w, torch.tensor([1.0, 0.25], dtype=F64), rtol=1e-13)
    # orthogonal gradients, G = diag(1, 4), α = 1/2: w_t = ‖g_t‖^{-2α/(α+1)} = (1, 2^{-2/3})
    w, _ = solve(torch.tensor([[1.0, 0.0], [0.0, 4.0]], dtype=F64), alpha=0.5, eps=0.0)
    assert torch.allclose(w, torch.tensor([1.0, 2.0 ** (-2 / 3)], dtype=F64), rtol=1e-13)
    # identical gradients, ‖g‖² = 2, m = 3, α = 3: (Gw)_t = 6w = w^{-1/3}, w = 6^{-3/4} each
    w, _ = solve(torch.full((3, 3), 2.0, dtype=F64), alpha=3.0, eps=0.0)
    assert torch.allclose(w, torch.full((3,), 6.0 ** -0.75, dtype=F64), rtol=1e-13)


def test_fairgrad_rescales_exactly_with_the_gradients():
    """G → c²G: w → c^{-2α/(α+1)} w (the system's own scaling); here c = 1e-6, α = 2: w × 1e8."""
    gen = torch.Generator().manual_seed(0)
    jac = torch.randn(5, 12, generator=gen, dtype=F64)
    jac[1] = -0.8 * jac[0] + 0.3 * jac[1]
    big, _ = solve(jac @ jac.T, alpha=2.0)
    small, _ = solve(1e-12 * (jac @ jac.T), alpha=2.0)
    assert torch.allclose(small, 1e8 * big, rtol=1e-11)


def test_fairgrad_ridge_gives_a_finite_answer_at_a_pareto_stationary_point():
    """g and −g: Gw = w^{-1/α} has no solution; the ridge eps·diag G makes one, w = (eps·‖g‖²)^{-1/2}
    each at α = 1 (the ±g parts cancel: (Gw)_t = eps‖g‖² w_t)."""
    g = torch.tensor([1.0, 2.0, 2.0], dtype=F64)
    jac = torch.stack([g, -g])
    w, fair = solve(jac @ jac.T, alpha=1.0, eps=1e-6)
    # (Gw)_t is a difference of terms 1e6 times larger: rounding leaves ~1e-10 relative
    assert torch.allclose(w, torch.full((2,), (1e-6 * 9.0) ** -0.5, dtype=F64), rtol=1e-8)
    assert fair.residual < 1e-8 and fair.diagnostics()["fairgrad_residual"] is fair.residual


def test_fair_weights_never_raises_the_objective_and_stops_at_the_solution():
    gen = torch.Generator().manual_seed(3)
    jac = torch.randn(6, 10, generator=gen, dtype=F64)
    k = jac @ jac.T / 10
    start = torch.full((6,), 50.0, dtype=F64)                     # far from the solution
    values = [fair_objective(k, fair_weights(k, start, 2.0, steps, check_every=None), 2.0) for steps in range(12)]
    assert all(b <= a + 1e-12 * abs(a) for a, b in zip(values, values[1:]))
    v = fair_weights(k, start, 2.0, 50)
    assert torch.allclose(k @ v, v.pow(-0.5), rtol=1e-12)
