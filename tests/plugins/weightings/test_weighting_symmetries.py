"""Symmetries every registered weighting must have (issue 24), or an exemption that says why:

- permutation equivariance: the tasks listed in another order (their names, losses and
  gradient rows permuted alike, two calls in a row so state is exercised) give the same
  update, and task weights permuted alike;
- one task: the update is a positive multiple of that task's gradient, whatever its scale
  (1e-6 … 1e6, float32 and float64), and a zero gradient gives a zero update.
"""
from __future__ import annotations

import pytest
import torch

from mtl_platform import registry
from mtl_platform.gradients.combine import call_weighting, form

from conftest import weighting_args

REG = registry.load(builtin_only=True)[0]
NAMES = REG.names("weighting")

# weightings whose answer depends on the task order by definition
ORDER_DEPENDENT = {
    "rlw": "random weights drawn in task order: a permutation permutes which task gets which draw",
    "agr_rand": "random values for the conflicting coordinates: the draws depend on the task order",
    "pcgrad": "the projection order is random (shuffle) or the listed order, and beyond two tasks it changes the result",
    "gh_plus_plus": "asymmetric by design: the first task (or priority) is up-weighted",
    "equilibrium": "the domain-specific parts are adjusted one after another in task order",
    "gradvac": "each task meets the others in a random order, which changes the result beyond two tasks",
}
# weightings whose answer is exact only to a tolerance: rtol, and why
TOLERANCE = {"cagrad": (1e-4, "an iterative dual solver with a fixed budget (50 steps): exact to ~1e-5")}


def make(name, tasks, args=None):
    args = weighting_args(name, list(tasks)) if args is None else args
    return REG.get("weighting", name).cls(list(tasks), **args)


def problem(seed, m=4, p=24):
    gen = torch.Generator().manual_seed(seed)
    jac = torch.randn(m, p, generator=gen, dtype=torch.float64)
    jac[1] = -0.7 * jac[0] + 0.4 * jac[1]                     # a conflicting pair
    jac[3] = 3.0 * jac[3]                                     # another scale
    losses = torch.rand(m, generator=gen, dtype=torch.float64) + 0.2
    return jac, losses


@pytest.mark.parametrize("name", NAMES)
def test_permuting_the_tasks_permutes_the_answer(name, one_thread):
    if name in ORDER_DEPENDENT:
        pytest.skip(ORDER_DEPENDENT[name])
    m = 4
    perm = torch.tensor([2, 0, 3, 1])
    tasks = [f"t{i}" for i in range(m)]
    args = weighting_args(name, tasks)                        # per task name: the same for both orders
    plain, permuted = make(name, tasks, args), make(name, [tasks[i] for i in perm], args)
    rtol = TOLERANCE.get(name, (1e-8, ""))[0]
    for call_no in range(2):
        jac, losses = problem(call_no)
        torch.manual_seed(7)
        answer, combined = call_weighting(plain, losses, jac)
        torch.manual_seed(7)
        answer_p, combined_p = call_weighting(permuted, losses[perm], jac[perm])
        where = f"{name}, call {call_no + 1}"
        assert torch.allclose(combined_p, combined, rtol=rtol, atol=rtol * 1e-2 * combined.abs().max()), where
        if form(answer, m, jac.shape[1], 1, plain.needs) == "weights":
            assert torch.allclose(answer_p, answer[perm], rtol=rtol, atol=rtol * 1e-2 * answer.abs().max()), where


@pytest.mark.parametrize("name", NAMES)
def test_one_task_gives_a_positive_multiple_of_its_gradient(name, one_thread):
    for dtype in (torch.float32, torch.float64):
        for scale in (1e-6, 1.0, 1e6):
            weighting = make(name, ["only"])
            g = scale * torch.randn(1, 30, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
            jac = g.to(dtype)
            torch.manual_seed(0)
            for call_no in range(2):
                _, combined = call_weighting(weighting, torch.tensor([0.8], dtype=dtype), jac)
                where = f"{name}, scale {scale}, {dtype}, call {call_no + 1}"
                c = (combined.double() @ g[0]) / (g[0] @ g[0])
                assert c > 0, where
                assert torch.allclose(combined.double(), c * g[0], rtol=1e-5, atol=1e-5 * c * g.abs().max()), where
            zero, _ = torch.zeros_like(jac), None
            _, combined = call_weighting(make(name, ["only"]), torch.tensor([0.8], dtype=dtype), zero)
            assert torch.isfinite(combined).all() and (combined == 0).all(), f"{name}: zero gradient, {dtype}"


def test_every_exemption_names_a_registered_weighting():
    assert set(ORDER_DEPENDENT) | set(TOLERANCE) <= set(NAMES)
