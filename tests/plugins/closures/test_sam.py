"""SAM (Foret et al., ICLR 2021) through the real seam: the step against a hand computation, any
weighting's combined gradient, Adam as the base optimizer, exact restore, BatchNorm statistics
and dropout masks."""
import copy

import pytest
import torch

from mtl_platform.contracts import LossClosure
from mtl_platform_plugins.closures.sam import SAM
from mtl_platform_plugins.weightings.fixed import Fixed

from closure_cases import NormDropNet, Quadratics, RecordingSGD, closure_of, engine_of

A = {"T": [[2.0, 0.0], [0.0, 1.0]], "S": [[1.0, 0.0], [0.0, 3.0]]}
B = {"T": [1.0, 0.0], "S": [0.0, 1.0]}


def test_sgd_step_equals_the_hand_computation():
    # L = L_T + L_S (ew): g = (A_T + A_S)θ − (b_T + b_S) = (2, 3) at θ = (1, 1); H = diag(3, 4)
    # ε = 0.05 (2, 3)/√13 = (0.0277350, 0.0416025); ∇L(θ + ε) = g + Hε = (2.0832050, 3.1664101)
    # SGD lr 0.1: θ ← (1, 1) − 0.1 ∇L(θ + ε) = (0.7916795, 0.6833590)
    model = Quadratics(["T", "S"], [1.0, 1.0], A, B)
    opt = RecordingSGD(model.parameters(), lr=0.1)
    SAM(rho=0.05).step(closure_of(model), engine_of(model), [opt])
    assert torch.allclose(model.seen[1], torch.tensor([1.0277350, 1.0416025], dtype=torch.float64), atol=1e-7)
    assert torch.allclose(opt.seen_grads[0], torch.tensor([2.0832050, 3.1664101], dtype=torch.float64), atol=1e-7)
    assert torch.equal(opt.seen_params[0], torch.tensor([1.0, 1.0], dtype=torch.float64))
    assert torch.allclose(model.theta.detach(), torch.tensor([0.7916795, 0.6833590], dtype=torch.float64),
                          atol=1e-7)


def test_the_perturbation_follows_the_configured_weightings_combined_gradient():
    # weights (1, 2): g = (1, 1) + 2 (1, 2) = (3, 5), H = A_T + 2 A_S = diag(4, 7)
    model = Quadratics(["T", "S"], [1.0, 1.0], A, B)
    weighting = Fixed(["T", "S"], weights={"T": 1.0, "S": 2.0})
    opt = RecordingSGD(model.parameters(), lr=0.1)
    out = SAM(rho=0.05).step(closure_of(model), engine_of(model, weighting), [opt])
    g = torch.tensor([3.0, 5.0], dtype=torch.float64)
    eps = 0.05 * g / g.norm()
    assert torch.allclose(model.seen[1] - 1.0, eps, atol=1e-12)
    assert torch.allclose(opt.seen_grads[0], g + torch.tensor([4.0, 7.0], dtype=torch.float64) * eps, atol=1e-12)
    assert out.weights.tolist() == [1.0, 2.0]


def test_adaptive_scales_the_perturbation_by_the_weights():
    model = Quadratics(["T", "S"], [0.5, 2.0], A, B)
    opt = RecordingSGD(model.parameters(), lr=0.1)
    SAM(rho=0.5, adaptive=True, eta=0.01).step(closure_of(model), engine_of(model), [opt])
    theta = torch.tensor([0.5, 2.0], dtype=torch.float64)
    g = torch.tensor([3.0 * 0.5 - 1.0, 4.0 * 2.0 - 1.0], dtype=torch.float64)
    t = theta.abs() + 0.01
    assert torch.allclose(model.seen[1] - theta, 0.5 * t * t * g / (t * g).norm(), atol=1e-12)


def test_adam_steps_with_the_gradient_at_the_perturbed_point():
    model = Quadratics(["T", "S"], [1.0, 1.0], A, B)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    SAM(rho=0.05).step(closure_of(model), engine_of(model), [opt])
    reference = torch.nn.Parameter(torch.tensor([1.0, 1.0], dtype=torch.float64))
    ref_opt = torch.optim.Adam([reference], lr=0.01)
    reference.grad = torch.tensor([2.0832050, 3.1664101], dtype=torch.float64)
    ref_opt.step()
    assert torch.allclose(model.theta.detach(), reference.detach(), atol=1e-9)
    assert model.theta.grad is None  # the engine zeroed after stepping


def sam_on_net(rho, seed=3):
    model = NormDropNet()
    model.train()
    opt = RecordingSGD(model.parameters(), lr=0.1)
    engine = engine_of(model)
    torch.manual_seed(seed)  # the batch's random draws (dropout)
    closure = LossClosure(model.losses, "cpu")
    out = SAM(rho=rho).step(closure, engine, [opt])
    return model, opt, out


def test_parameters_restored_exactly_and_running_stats_updated_by_the_first_pass_only():
    before = NormDropNet()
    reference = copy.deepcopy(before)
    reference.train()
    torch.manual_seed(3)
    reference.losses()  # one ordinary training forward: what the running statistics should show
    model, opt, _ = sam_on_net(0.5)
    assert all(torch.equal(a, b) for a, b in zip(opt.seen_params, before.parameters()))
    bn, ref_bn = model.trunk[1], reference.trunk[1]
    assert torch.equal(bn.running_mean, ref_bn.running_mean)
    assert torch.equal(bn.running_var, ref_bn.running_var)
    assert int(bn.num_batches_tracked) == 1
    assert not torch.equal(bn.running_mean, before.trunk[1].running_mean)  # the first pass did update them


def test_at_rho_zero_the_perturbed_pass_repeats_the_first_dropout_masks_included():
    model, opt, out = sam_on_net(0.0)
    plain = NormDropNet()
    plain.train()
    torch.manual_seed(3)
    losses = plain.losses()
    sum(losses.values()).backward()
    for p, g in zip(plain.parameters(), opt.seen_grads):
        assert torch.equal(p.grad, g)
    assert all(torch.equal(out.losses[t], losses[t].detach()) for t in losses)


def test_the_random_stream_after_a_step_is_that_of_the_ordinary_step():
    sam_on_net(0.5)
    after_sam = torch.rand(3)
    plain = NormDropNet()
    plain.train()
    torch.manual_seed(3)
    plain.losses()
    assert torch.equal(torch.rand(3), after_sam)
