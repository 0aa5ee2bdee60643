"""Every registered weighting with a task absent from the batch (partial labels: its loss is 0,
its gradient row zero, ``present`` says so): a finite update, the absent task's weight 0, and,
where that is the method's definition, exactly the update over the present tasks alone
(``contracts.absent``)."""
from __future__ import annotations

import pytest
import torch

from mtl_platform import registry
from mtl_platform.contracts import Needs
from mtl_platform.gradients.combine import call_weighting

from conftest import weighting_args

REG = registry.load(builtin_only=True)[0]
NAMES = REG.names("weighting")
DTYPES = (torch.float32, torch.float64)
# the update over m tasks with one absent is not the update of a fresh weighting over the others:
NOT_THE_SUBPROBLEM = {
    "rlw": "random weights: the draws for m and m-1 tasks differ",
    "agr_rand": "random agreement draws: they differ for m and m-1 tasks",
    "fixed": "configured per task name: the fresh two-task instance has other weights",
    "equilibrium": "specifics are taken against the mean over all K tasks, an absent one included",
}


def make(name, m):
    tasks = [f"t{i}" for i in range(m)]
    return REG.get("weighting", name).cls(tasks, **weighting_args(name, tasks))


def problem(dtype, absent):
    """Three tasks, 12 shared coordinates, tasks 0 and 1 in conflict; the absent tasks zeroed."""
    g = torch.Generator().manual_seed(0)
    jac = torch.randn(3, 12, generator=g, dtype=dtype)
    jac[1] = -0.5 * jac[0] + 0.3 * jac[1]
    losses = torch.tensor([0.7, 1.3, 0.4], dtype=dtype)
    present = torch.ones(3, dtype=torch.bool)
    present[list(absent)] = False
    jac[~present] = 0
    losses[~present] = 0
    return jac, losses, present


def update(weighting, losses, jac, present=None):
    sizes = [6, 6] if weighting.needs is Needs.BLOCK_GRAMIANS else [jac.shape[1]]
    torch.manual_seed(1)
    return call_weighting(weighting, losses, jac, sizes, present=present)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("absent", [(0,), (2,), (0, 1, 2)], ids=["first", "last", "all"])
@pytest.mark.parametrize("name", NAMES)
def test_a_finite_update_and_no_weight_for_an_absent_task(name, absent, dtype, one_thread):
    jac, losses, present = problem(dtype, absent)
    weighting = make(name, 3)
    for _ in range(2):  # a second call sees the state the first left
        answer, combined = update(weighting, losses, jac, present)
        assert torch.isfinite(answer).all() and torch.isfinite(combined).all()
        if answer.dim() == 1 and answer.shape[0] == 3 and weighting.absent_tasks != "own":
            assert (answer[~present] == 0).all()
    if len(absent) == 3:
        assert (combined == 0).all()


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("absent", [0, 1, 2])
@pytest.mark.parametrize("name", [n for n in NAMES if n not in NOT_THE_SUBPROBLEM])
def test_the_update_is_the_update_over_the_present_tasks(name, absent, dtype, one_thread):
    jac, losses, present = problem(dtype, (absent,))
    _, combined = update(make(name, 3), losses, jac, present)
    _, alone = update(make(name, 2), losses[present], jac[present])
    tol = 1e-5 if dtype == torch.float32 else 1e-7  # CAGrad's iterative solver: 2e-8 apart in float64
    assert torch.allclose(combined, alone, rtol=tol, atol=tol * alone.abs().max())


def test_mgda_is_not_stopped_by_an_absent_task():
    """The zero row would be the minimum-norm point of the hull: no update at all."""
    jac, losses, present = problem(torch.float64, (2,))
    _, combined = update(make("mgda", 3), losses, jac, present)
    _, unaware = update(make("mgda", 3), losses, jac)
    assert unaware.abs().max() < 1e-12 < combined.abs().max()


def test_uw_leaves_an_absent_task_out_of_its_auxiliary_loss():
    uw = make("uw", 2)
    losses = torch.tensor([0.5, 0.0])
    aux = uw.respond_aux(losses, present=torch.tensor([True, False]))
    aux.backward()
    assert uw.log_var.grad[1] == 0.0 and uw.log_var.grad[0] != 0.0
