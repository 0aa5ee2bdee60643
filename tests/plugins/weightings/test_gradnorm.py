"""GradNorm (Chen et al., ICML 2018): the auxiliary gradient by hand, rest at equal norms and
rates, renormalised weights, permutation equivariance, learnt weights that equalise the weighted
norms, the state round trip."""
import pytest
import torch

from mtl_platform_plugins.weightings.gradnorm import GradNorm

from staple_weighting_cases import D, jacobian, tasks


def test_gradnorm_aux_gradient_matches_a_hand_computation():
    gn = GradNorm(["a", "b"], alpha=1.5)
    with torch.no_grad():
        gn.task_weights.copy_(torch.tensor([1.0, 0.5]))
    gram = torch.tensor([[1.0, 0.5], [0.5, 9.0]])                  # ‖g‖ = [1, 3]
    gn.weights(torch.tensor([2.0, 4.0]), gram=gram)                # records L(0) = [2, 4]
    aux = gn.aux_loss(torch.tensor([1.0, 3.0]), gram=gram)
    # G = w·‖g‖ = [1, 1.5], Ḡ = 1.25; L̃ = [0.5, 0.75], r = L̃/0.625 = [0.8, 1.2]
    target = [1.25 * 0.8 ** 1.5, 1.25 * 1.2 ** 1.5]                # [0.8944, 1.6432]
    assert aux.item() == pytest.approx(abs(1 - target[0]) + abs(1.5 - target[1]), rel=1e-6)
    aux.backward()
    # ∂/∂w_t = sign(G_t − target_t)·‖g_t‖ (target held constant): [+1·1, −1·3]
    assert torch.allclose(gn.task_weights.grad, torch.tensor([1.0, -3.0]))


def test_gradnorm_is_at_rest_when_norms_and_rates_are_equal():
    gn = GradNorm(tasks(3))
    gram = torch.tensor([[4.0, 1.0, -2.0], [1.0, 4.0, 0.5], [-2.0, 0.5, 4.0]])
    gn.weights(torch.tensor([1.0, 2.0, 3.0]), gram=gram)
    aux = gn.aux_loss(torch.tensor([0.5, 1.0, 1.5]), gram=gram)    # every task at half its L(0)
    aux.backward()
    assert aux.item() == 0.0
    assert torch.equal(gn.task_weights.grad, torch.zeros(3))


def test_gradnorm_weights_are_renormalised_and_the_parameter_kept_in_check():
    gn = GradNorm(tasks(3))
    with torch.no_grad():
        gn.task_weights.copy_(torch.tensor([2.0, -1.0, 4.0]))
    w = gn.weights(torch.ones(3), gram=torch.eye(3))
    assert w.sum().item() == pytest.approx(3.0) and (w > 0).all() and not w.requires_grad
    assert w[0].item() == pytest.approx(1.0)                       # 3·2/6 (the −1 clamped to ~0)
    gn.after_step(lambda: pytest.fail("GradNorm must not re-evaluate the losses"))
    assert gn.task_weights.sum().item() == pytest.approx(3.0) and (gn.task_weights > 0).all()


def test_gradnorm_permutes_with_the_tasks():
    gen = torch.Generator().manual_seed(0)
    jac = jacobian("scaled", 5, 30, gen)
    l0, l1 = torch.rand(5, generator=gen, dtype=D) + 0.5, torch.rand(5, generator=gen, dtype=D) + 0.1
    perm = torch.randperm(5, generator=gen)
    grads = []
    for order in (torch.arange(5), perm):
        gn = GradNorm(tasks(5))
        j = jac[order]
        gn.weights(l0[order], gram=j @ j.T)
        gn.aux_loss(l1[order], gram=j @ j.T).backward()
        grads.append(gn.task_weights.grad)
    assert torch.allclose(grads[1], grads[0][perm], rtol=1e-5)


def test_gradnorm_learns_weights_that_equalise_the_weighted_norms():
    """With equal training rates the target is Ḡ for every task: w_t ∝ 1/‖g_t‖ at rest."""
    gn = GradNorm(tasks(3))
    opt = torch.optim.Adam(gn.parameters(), lr=0.01)
    norms = torch.tensor([1.0, 2.0, 8.0])
    gram = torch.diag(norms ** 2)
    losses = torch.ones(3)
    for _ in range(600):
        opt.zero_grad()
        gn.weights(losses, gram=gram)
        gn.aux_loss(losses, gram=gram).backward()
        opt.step()
        gn.after_step(None)
    w = gn.weights(losses, gram=gram)
    expected = 3 * (1 / norms) / (1 / norms).sum()
    assert torch.allclose(w, expected, rtol=0.05)


def test_gradnorm_state_round_trips():
    gn = GradNorm(tasks(3), alpha=0.5)
    gram = torch.diag(torch.tensor([1.0, 4.0, 9.0]))
    gn.weights(torch.tensor([1.0, 2.0, 3.0]), gram=gram)
    with torch.no_grad():
        gn.task_weights.copy_(torch.tensor([0.5, 1.0, 1.5]))
    fresh = GradNorm(tasks(3), alpha=0.5)
    fresh.load_state_dict(gn.state_dict())
    later = torch.tensor([0.7, 1.0, 2.0])
    assert torch.equal(fresh.initial_losses, torch.tensor([1.0, 2.0, 3.0]))
    assert torch.equal(fresh.aux_loss(later, gram=gram), gn.aux_loss(later, gram=gram))
