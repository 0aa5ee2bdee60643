"""FAMO (Liu et al., NeurIPS 2023, Algorithm 1): the weights, the update direction, up-weighting
the task whose loss fell less (SGD and Adam logit updates), after_step's contract, the decay,
permutation equivariance, the state round trip."""
import math

import pytest
import torch

from mtl_platform.errors import UserError
from mtl_platform.gradients.combine import call_weighting
from mtl_platform_plugins.weightings.famo import FAMO

from staple_weighting_cases import D, tasks


def test_famo_weights_follow_algorithm_1():
    famo = FAMO(["a", "b"])
    # ξ = 0: z = ½; w_t = c·z_t/L_t, c = (Σ z/L)^{-1}: L = [1, 3] → [0.75, 0.25]
    assert torch.allclose(famo.weights(torch.tensor([1.0, 3.0])), torch.tensor([0.75, 0.25]))
    with torch.no_grad():
        famo.logits.copy_(torch.tensor([0.0, math.log(3.0)]))       # z = [¼, ¾]
    w = famo.weights(torch.tensor([1.0, 3.0]))
    assert torch.allclose(w, torch.tensor([0.5, 0.5]))
    shifted = FAMO(["a", "b"], min_losses=[0.5, 0.0])               # D = L − L* = [0.5, 1]
    assert torch.allclose(shifted.weights(torch.tensor([1.0, 1.0])), torch.tensor([2 / 3, 1 / 3]))
    with pytest.raises(UserError, match="one per task"):
        FAMO(["a", "b"], min_losses=[0.0])


def test_famo_update_direction_is_sum_of_weighted_log_gradients():
    gen = torch.Generator().manual_seed(0)
    jac, losses = torch.randn(3, 20, generator=gen, dtype=D), torch.tensor([0.5, 2.0, 4.0], dtype=D)
    famo = FAMO(tasks(3))
    with torch.no_grad():
        famo.logits.copy_(torch.tensor([0.2, -0.1, 0.4]))
    _, update = call_weighting(famo, losses, jac)
    z = torch.softmax(torch.tensor([0.2, -0.1, 0.4], dtype=D), 0)
    c = 1 / (z / losses).sum()
    assert torch.allclose(update, c * (z[:, None] * jac / losses[:, None]).sum(0))


@pytest.mark.parametrize("logit_update", ["sgd", "adam"])
def test_famo_up_weights_the_task_whose_loss_fell_less(logit_update):
    famo = FAMO(["fast", "slow"], w_lr=0.025, gamma=1e-3, logit_update=logit_update)
    famo.weights(torch.tensor([1.0, 1.0]))
    famo.after_step(lambda: {"fast": torch.tensor(0.5), "slow": torch.tensor(0.9)})
    delta = torch.tensor([math.log(2.0), math.log(1 / 0.9)])
    grad = 0.5 * (delta - delta.mean())                             # z ⊙ (δ − zᵀδ), ξ = 0
    if logit_update == "sgd":
        expected = -0.025 * grad
    else:                                                           # Adam's first step: lr·sign
        expected = -0.025 * grad / (grad.abs() + 1e-8)
    assert torch.allclose(famo.logits, expected, atol=1e-7)
    assert famo.logits[1] > 0 > famo.logits[0]
    z = torch.softmax(famo.logits, 0)
    assert z[1] > z[0]
    w = famo.weights(torch.tensor([1.0, 1.0]))
    assert w[1] > w[0]


def test_famo_after_step_needs_weights_first_and_uses_the_closure_once():
    famo = FAMO(["a", "b"])
    famo.after_step(lambda: pytest.fail("no weights were applied, so no re-evaluation"))
    calls = []
    famo.weights(torch.tensor([1.0, 2.0]))
    famo.after_step(lambda: calls.append(1) or {"a": torch.tensor(0.9), "b": torch.tensor(2.0)})
    famo.after_step(lambda: calls.append(1) or {"a": torch.tensor(0.9), "b": torch.tensor(2.0)})
    assert calls == [1]


def test_famo_decay_pulls_logits_to_zero_when_losses_do_not_move():
    famo = FAMO(["a", "b"], gamma=0.5, logit_update="sgd", w_lr=0.1)
    with torch.no_grad():
        famo.logits.copy_(torch.tensor([1.0, -1.0]))
    famo.weights(torch.tensor([1.0, 1.0]))
    famo.after_step(lambda: {"a": torch.tensor(1.0), "b": torch.tensor(1.0)})
    assert torch.allclose(famo.logits, torch.tensor([1.0, -1.0]) * (1 - 0.1 * 0.5))


def test_famo_permutes_with_the_tasks():
    losses = torch.tensor([0.3, 1.0, 2.5, 0.7])
    after = torch.tensor([0.2, 0.95, 2.0, 0.69])
    perm = torch.tensor([2, 0, 3, 1])
    out = []
    for order in (torch.arange(4), perm):
        famo = FAMO(tasks(4))
        for _ in range(3):
            famo.weights(losses[order])
            famo.after_step(lambda o=order: dict(zip(tasks(4), after[o])))
        out.append(famo.weights(losses[order]))
    assert torch.allclose(out[1], out[0][perm], atol=1e-6)


def test_famo_state_round_trips():
    famo = FAMO(tasks(3))
    for step in range(4):
        famo.weights(torch.tensor([1.0, 2.0, 3.0]) / (step + 1))
        famo.after_step(lambda s=step: dict(zip(tasks(3), torch.tensor([0.8, 1.9, 2.0]) / (s + 1))))
    famo.weights(torch.tensor([0.2, 0.4, 0.6]))
    fresh = FAMO(tasks(3))
    fresh.load_state_dict(famo.state_dict())
    for key in ("logits", "exp_avg", "exp_avg_sq", "updates", "losses_before"):
        assert torch.equal(getattr(fresh, key), getattr(famo, key)), key
    fresh.weights(torch.tensor([0.2, 0.4, 0.6]))
    after = dict(zip(tasks(3), torch.tensor([0.1, 0.4, 0.5])))
    famo.after_step(lambda: after)
    fresh.after_step(lambda: after)
    assert torch.equal(fresh.logits, famo.logits)
