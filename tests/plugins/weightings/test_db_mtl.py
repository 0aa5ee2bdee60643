"""DB-MTL (Lin et al., 2023): the EMA of log-gradients towards the closed form, the rate
schedule, invariance to loss scales and task order, the state round trip and a restart on a new
space."""
import torch

from mtl_platform.gradients.combine import call_weighting
from mtl_platform_plugins.weightings.db_mtl import DBMTL

from staple_weighting_cases import D, jacobian, tasks


def db_closed_form(jac, losses):
    log_grads = jac / losses[:, None]
    norms = log_grads.norm(dim=1)
    return (norms.max() / norms)[:, None].mul(log_grads).sum(0)


def test_db_mtl_with_a_constant_jacobian_follows_the_ema_to_the_closed_form():
    gen = torch.Generator().manual_seed(0)
    jac = jacobian("scaled", 4, 30, gen)
    losses = torch.tensor([0.1, 1.0, 5.0, 30.0], dtype=D)
    db = DBMTL(tasks(4), beta=0.9, eps=0.0)
    target = db_closed_form(jac, losses)
    for k in range(1, 61):
        out, _ = call_weighting(db, losses, jac)
        assert torch.allclose(out, (1 - 0.9 ** k) * target, rtol=1e-10), k
    assert torch.allclose(out, target, rtol=2e-3)
    assert db.grad_ema.shape == (4, 30) and db.steps.item() == 60


def test_db_mtl_rate_schedule():
    gen = torch.Generator().manual_seed(1)
    jac, losses = torch.randn(3, 20, generator=gen, dtype=D), torch.tensor([1.0, 2.0, 0.5], dtype=D)
    db = DBMTL(tasks(3), beta=0.9, beta_sigma=0.5, eps=0.0)
    s = 0.0
    for k in range(1, 20):
        rate = 0.9 / k ** 0.5
        s = rate * s + (1 - rate)
        out, _ = call_weighting(db, losses, jac)
        assert torch.allclose(out, s * db_closed_form(jac, losses), rtol=1e-10), k


def test_db_mtl_is_invariant_to_loss_scales_and_task_order():
    """The log transform removes a task's loss scale: L_t → c·L_t (gradient c·g_t) changes nothing."""
    gen = torch.Generator().manual_seed(2)
    jacs = [torch.randn(4, 25, generator=gen, dtype=D) for _ in range(3)]
    losses = [torch.rand(4, generator=gen, dtype=D) + 0.2 for _ in range(3)]
    c = torch.tensor([1e-3, 1.0, 7.0, 1e3], dtype=D)
    perm = torch.tensor([3, 1, 0, 2])
    a, b, p = DBMTL(tasks(4), eps=0.0), DBMTL(tasks(4), eps=0.0), DBMTL(tasks(4), eps=0.0)
    for jac, loss in zip(jacs, losses):
        out_a, _ = call_weighting(a, loss, jac)
        out_b, _ = call_weighting(b, c * loss, c[:, None] * jac)
        out_p, _ = call_weighting(p, loss[perm], jac[perm])
        assert torch.allclose(out_a, out_b, rtol=1e-9)
        assert torch.allclose(out_a, out_p, rtol=1e-9)


def test_db_mtl_state_round_trips_and_restarts_on_a_new_space():
    gen = torch.Generator().manual_seed(3)
    jac, losses = torch.randn(3, 12, generator=gen, dtype=D), torch.tensor([1.0, 0.5, 2.0], dtype=D)
    db = DBMTL(tasks(3))
    for _ in range(3):
        call_weighting(db, losses, jac)
    fresh = DBMTL(tasks(3))
    fresh.load_state_dict(db.state_dict())                          # lazily sized (m, P) buffer
    assert fresh.grad_ema.shape == (3, 12) and fresh.steps.item() == 3
    assert torch.equal(call_weighting(fresh, losses, jac)[0], call_weighting(db, losses, jac)[0])
    other = torch.randn(3, 7, generator=gen, dtype=D)
    out, _ = call_weighting(db, losses, other)                      # another space: a fresh EMA
    assert db.steps.item() == 1
    assert torch.allclose(out, 0.1 * db_closed_form(other, losses + 1e-8), rtol=1e-9)
