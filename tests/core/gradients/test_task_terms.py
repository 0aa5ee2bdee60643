"""Each task's backward pass visits only its own graph (``jacobian.task_jacobian``'s ``terms``):
where the tasks' graphs are disjoint past the shared layer — MT-SAC's per-task batches, one call
of the shared trunk per task — a pass through the stacked loss vector would also run every other
task's branch with a zero gradient, m times the floor's work (issue 19). A counting autograd
function on each branch sees every gradient that reaches it: none may be zero."""
import pytest
import torch
from torch import nn

from mtl_platform.gradients import GradientEngine
from mtl_platform_plugins.weightings.mgda import MGDA
from mtl_platform_plugins.weightings.pcgrad import PCGrad

TASKS = ["a", "b", "c"]


class Watch(torch.autograd.Function):
    """The identity, recording whether each gradient that reaches it is all zero."""

    @staticmethod
    def forward(ctx, x, log):
        ctx.log = log
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        ctx.log.append(bool((grad == 0).all()))
        return grad, None


class PerTaskTrunk(nn.Module):
    """One shared layer called once per task on that task's own rows (as HPS does for a
    multi-input domain), then a head per task; a ``Watch`` on each task's branch."""

    def __init__(self, dtype):
        super().__init__()
        torch.manual_seed(0)
        self.trunk = nn.Linear(4, 5).to(dtype)
        self.heads = nn.ModuleDict({t: nn.Linear(5, 1).to(dtype) for t in TASKS})
        self.inputs = {t: torch.randn(6, 4, dtype=dtype) for t in TASKS}
        self.logs = {t: [] for t in TASKS}
        self.rep = None

    def forward(self):
        return {t: self.heads[t](Watch.apply(self.trunk(self.inputs[t]), self.logs[t])).pow(2).mean() for t in TASKS}

    def shared_parameters(self):
        return list(self.trunk.parameters())

    def task_parameters(self, task):
        return list(self.heads[task].parameters())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("path,explicit", [("jacobian", False), ("accumulate", False), ("jacobian", True)])
@pytest.mark.parametrize("weighting", [PCGrad, MGDA])
def test_no_task_pass_runs_another_tasks_branch(weighting, path, explicit, dtype):
    model = PerTaskTrunk(dtype)
    engine = GradientEngine(model, weighting(TASKS), TASKS, gramian_path=path)
    for _ in range(2):  # the accumulated path verifies itself on its first step
        for log in model.logs.values():
            log.clear()
        engine.backward(model(), params=model.shared_parameters() if explicit else None)
        for t, log in model.logs.items():
            assert log, f"task {t}'s branch got no gradient"
            assert not any(log), f"task {t}'s branch ran a backward pass with a zero gradient: {log}"
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.trunk.parameters())


def test_the_stacked_vector_alone_runs_every_branch():
    """The control: differentiating one entry of the stacked losses does run the others' branches
    with zeros (what the ``terms`` avoid), so the test above can fail."""
    model = PerTaskTrunk(torch.float64)
    losses = model()
    vector = torch.stack([losses[t] for t in TASKS])
    torch.autograd.grad(vector[0], model.shared_parameters())
    assert model.logs["b"] == [True] and model.logs["c"] == [True] and model.logs["a"] == [False]
