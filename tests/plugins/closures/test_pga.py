"""PGA (spec gradients.md §3.3) through the real seam: the quadratic test vector, the analytic
g + HΔ, λ on the shared block only, block-wise against joint, and what it refuses."""
import pytest
import torch

from mtl_platform.errors import UserError
from mtl_platform_plugins.closures.pga import PGA
from mtl_platform_plugins.weightings.ew import EW
from mtl_platform_plugins.weightings.pcgrad import PCGrad

from closure_cases import Quadratics, RecordingSGD, closure_of, engine_of

# spec §3.3: A_T = diag(2, 1), b_T = (1, 0), A_S = diag(1, 3), b_S = (0, 1), θ = (1, 1)
A = {"T": [[2.0, 0.0], [0.0, 1.0]], "S": [[1.0, 0.0], [0.0, 3.0]]}
B = {"T": [1.0, 0.0], "S": [0.0, 1.0]}


class FakeDomain:
    def __init__(self, tasks):
        self.task_names = list(tasks)
        self.name = "fake"


def pga_step(model, **params):
    method = PGA(**params)
    method.check(FakeDomain(model.tasks), EW(model.tasks))
    opt = RecordingSGD(model.parameters(), lr=1.0)
    out = method.step(closure_of(model), engine_of(model), [opt])
    return out, opt


def test_the_spec_quadratic_vector_through_the_seam():
    model = Quadratics(["T", "S"], [1.0, 1.0], A, B)
    out, opt = pga_step(model, radius=0.1, align=0.5, tradeoff=0.5)
    seen = torch.stack(model.seen)
    # evaluations: θ (first pass), θ' (target's perturbed pass), θ'' (source's)
    assert torch.equal(seen[0], torch.tensor([1.0, 1.0], dtype=torch.float64))
    assert torch.allclose(seen[1], torch.tensor([0.9125968, 0.7544829], dtype=torch.float64), atol=1e-6)
    assert torch.allclose(seen[2], torch.tensor([0.8866075, 0.9313288], dtype=torch.float64), atol=1e-6)
    # gradients reaching θ: g_T, g_S at θ, then g̃_T at θ', g̃_S at θ''
    g = model.grads
    assert torch.allclose(g[0], torch.tensor([1.0, 1.0], dtype=torch.float64))
    assert torch.allclose(g[1], torch.tensor([1.0, 2.0], dtype=torch.float64))
    assert torch.allclose(g[2], torch.tensor([0.8251936, 0.7544829], dtype=torch.float64), atol=1e-6)
    assert torch.allclose(g[3], torch.tensor([0.8866075, 1.7939865], dtype=torch.float64), atol=1e-6)
    final = opt.seen_grads[0]
    assert torch.allclose(final, torch.tensor([1.2684973, 1.6514762], dtype=torch.float64), atol=1e-6)
    # the same final gradient is the analytic Σ c_i (g_i + H_i Δ_i)
    theta = torch.tensor([1.0, 1.0], dtype=torch.float64)
    analytic = sum(c * (model.A[t] @ theta - model.b[t] + model.A[t] @ (seen[k] - theta))
                   for c, t, k in ((1.0, "T", 1), (0.5, "S", 2)))
    assert torch.allclose(final, analytic, atol=1e-12)
    # parameters were restored exactly before the step; SGD (lr 1) then took it
    assert torch.equal(opt.seen_params[0], theta)
    assert torch.allclose(model.theta.detach(), theta - final, atol=1e-15)
    assert out.weights.tolist() == [1.0, 0.5]
    assert torch.allclose(torch.stack([out.losses["T"], out.losses["S"]]),
                          torch.tensor([0.5, 1.0], dtype=torch.float64))  # at θ: ½·3 − 1, ½·4 − 1


def test_target_option_swaps_the_coefficients():
    model = Quadratics(["S", "T"], [1.0, 1.0], A, B)
    _, opt = pga_step(model, radius=0.1, align=0.5, tradeoff=0.5, target="T")
    assert torch.allclose(opt.seen_grads[0], torch.tensor([1.2684973, 1.6514762], dtype=torch.float64), atol=1e-6)


# tasks with their own blocks: x = (θ0, θ1, φ_i), couplings between θ and φ_i
A3 = {"T": [[2.0, 0.3, 0.5], [0.3, 1.0, 0.0], [0.5, 0.0, 1.5]],
      "S": [[1.0, 0.0, 0.2], [0.0, 3.0, -0.4], [0.2, -0.4, 2.0]]}
B3 = {"T": [1.0, 0.0, 0.5], "S": [0.0, 1.0, -1.0]}


def expected_own_blocks(radius, align, lam, joint):
    """The §3.3 update written out for x = (θ, φ_i), independently of the plugin."""
    x0 = {"T": torch.tensor([1.0, 1.0, 0.5], dtype=torch.float64), "S": torch.tensor([1.0, 1.0, -0.3],
                                                                                    dtype=torch.float64)}
    A = {t: torch.tensor(A3[t], dtype=torch.float64) for t in A3}
    b = {t: torch.tensor(B3[t], dtype=torch.float64) for t in B3}
    g = {t: A[t] @ x0[t] - b[t] for t in A}
    out = {}
    for t, o in (("T", "S"), ("S", "T")):
        if joint:
            d = radius * g[t] / (g[t].norm() + 1e-12)
        else:
            d = torch.cat([radius * g[t][:2] / (g[t][:2].norm() + 1e-12),
                           radius * g[t][2:] / (g[t][2:].norm() + 1e-12)])
        d[:2] -= align * g[o][:2] / (g[o][:2].norm() * g[t][:2].norm() + 1e-12)
        out[t] = A[t] @ (x0[t] + d) - b[t]
    return out["T"][:2] + lam * out["S"][:2], out["T"][2:], out["S"][2:]


@pytest.mark.parametrize("joint", [False, True])
def test_own_blocks_get_their_unscaled_perturbed_gradient_and_lambda_only_the_shared(joint):
    model = Quadratics(["T", "S"], [1.0, 1.0], A3, B3, own={"T": [0.5], "S": [-0.3]})
    _, opt = pga_step(model, radius=0.2, align=0.3, tradeoff=0.25, joint=joint)
    params = list(model.parameters())
    got = {id(p): gr for p, gr in zip(params, opt.seen_grads)}
    sh, own_t, own_s = expected_own_blocks(0.2, 0.3, 0.25, joint)
    assert torch.allclose(got[id(model.theta)], sh, atol=1e-12)
    assert torch.allclose(got[id(model.own["T"])], own_t, atol=1e-12)
    assert torch.allclose(got[id(model.own["S"])], own_s, atol=1e-12)
    assert torch.equal(opt.seen_params[0], torch.tensor([1.0, 1.0], dtype=torch.float64))


def test_joint_and_blockwise_differ_when_a_task_has_its_own_block():
    grads = []
    for joint in (False, True):
        model = Quadratics(["T", "S"], [1.0, 1.0], A3, B3, own={"T": [0.5], "S": [-0.3]})
        _, opt = pga_step(model, radius=0.2, align=0.3, tradeoff=0.25, joint=joint)
        grads.append(opt.seen_grads[0])
    assert not torch.allclose(grads[0], grads[1])


def test_radius_and_align_zero_is_the_plain_weighted_gradient():
    model = Quadratics(["T", "S"], [1.0, 1.0], A, B)
    _, opt = pga_step(model, radius=0.0, align=0.0, tradeoff=0.5)
    assert torch.allclose(opt.seen_grads[0], torch.tensor([1.5, 2.0], dtype=torch.float64))  # g_T + ½ g_S


def test_refuses_other_than_two_tasks_a_weighting_other_than_ew_and_an_unknown_target():
    with pytest.raises(UserError, match=r"closure: pga takes exactly two objectives; domain 'fake' has 3"):
        PGA().check(FakeDomain(["a", "b", "c"]), EW(["a", "b", "c"]))
    with pytest.raises(UserError, match=r"the weighting must be ew; got weighting 'pcgrad'"):
        PGA().check(FakeDomain(["a", "b"]), PCGrad(["a", "b"]))
    with pytest.raises(UserError, match=r"closure\.target: pga got 'c'"):
        PGA(target="c").check(FakeDomain(["a", "b"]), EW(["a", "b"]))
    with pytest.raises(UserError, match=r"closure\.radius"):
        PGA(radius=-0.1)
