"""Nash-MTL (Navon et al. 2022): the bargaining condition solved, its scale behaviour, identical
directions and the norm clip, weights reused between updates and the state round trip, a
Pareto-stationary point."""
import math

import torch

from mtl_platform_plugins.weightings.nash_mtl import NashMTL

from solver_weighting_cases import F64, family, identical, run, tasks


def test_nash_solves_the_bargaining_condition():
    for kind in ("random", "scaled", "conflict", "parallel"):
        for m in (2, 3, 5, 8, 10):
            j = family(kind, m, p=40, seed=m)
            gram = j @ j.T
            nash = NashMTL(tasks(m), max_norm=0.0, eps=0.0)
            w, d = run(nash, j)
            assert (w > 0).all()
            assert torch.allclose(w * (gram @ w), torch.ones(m, dtype=F64), atol=1e-8), (kind, m)
            assert float(nash.residual) < 1e-8
            assert abs(float(d @ d) - m) < 1e-6 * m                      # ‖d‖² = m


def test_nash_scale_behaviour():
    j = family("random", 4, seed=1)
    alpha, d = run(NashMTL(tasks(4), max_norm=0.0, eps=0.0), j)
    for s in (1e-3, 7.0, 1e3):
        js = j.clone()
        js[2] *= s
        alpha_s, d_s = run(NashMTL(tasks(4), max_norm=0.0, eps=0.0), js)
        want = alpha.clone()
        want[2] /= s
        assert torch.allclose(alpha_s, want, rtol=1e-9)
        assert torch.allclose(d_s, d, rtol=1e-9, atol=1e-12)


def test_nash_identical_directions_and_max_norm():
    g, _ = identical(3)
    u = g / g.norm()
    c = torch.tensor([1.0, 2.0, 5.0], dtype=F64)
    j = c[:, None] * u
    alpha, d = run(NashMTL(tasks(3), max_norm=0.0, eps=0.0), j)
    assert torch.allclose(alpha, 1 / (c * math.sqrt(3)), rtol=1e-8)
    assert torch.allclose(d, math.sqrt(3) * u, rtol=1e-8)
    # the default clip (authors' clip_grad_norm_ with max_norm = 1): ‖d‖ = √m → 1
    j = family("random", 4, seed=3)
    _, d = run(NashMTL(tasks(4)), j)
    assert abs(float(d.norm()) - 1.0) < 1e-8
    _, d = run(NashMTL(tasks(4), max_norm=10.0), j)
    assert abs(float(d.norm()) - 2.0) < 1e-6                              # below the clip: √4


def test_nash_update_weights_every_and_state_dict_round_trip():
    nash = NashMTL(tasks(3), update_weights_every=3, max_norm=0.0, eps=0.0)
    grams = [(lambda j: j @ j.T)(family("random", 3, seed=s)) for s in range(5)]
    ones = torch.ones(3, dtype=F64)
    w0 = nash.weights(ones, gram=grams[0])
    assert torch.allclose(w0 * (grams[0] @ w0), ones, atol=1e-8)
    w1 = nash.weights(ones, gram=grams[1])
    w2 = nash.weights(ones, gram=grams[2])
    assert torch.allclose(w1, w0.float().to(F64)) and torch.allclose(w2, w1)   # reused between updates
    state = nash.state_dict()
    assert "alpha" in state and "_extra_state" in state
    fresh = NashMTL(tasks(3), update_weights_every=3, max_norm=0.0, eps=0.0)
    fresh.load_state_dict(state)
    assert fresh.calls == 3 and torch.equal(fresh.alpha, nash.alpha)
    w3 = nash.weights(ones, gram=grams[3])
    w3_fresh = fresh.weights(ones, gram=grams[3])
    assert torch.allclose(w3, w3_fresh, atol=1e-12)
    assert torch.allclose(w3 * (grams[3] @ w3), ones, atol=1e-8)         # a new solve on call 3


def test_nash_pareto_stationary_stays_finite():
    j = torch.tensor([[1.0, 2.0, 0.0], [-1.0, -2.0, 0.0]], dtype=F64)   # exactly opposite
    nash = NashMTL(tasks(2))
    w, d = run(nash, j)
    assert torch.isfinite(w).all() and (w > 0).all() and d.norm() <= 1.0 + 1e-9
    assert torch.allclose(w[0], w[1])
