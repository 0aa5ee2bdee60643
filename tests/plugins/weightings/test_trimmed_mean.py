"""Trimmed mean (Yin et al. 2018): a hand-computed vector, the cap at the median, absent tasks."""
import torch

from mtl_platform.gradients.combine import call_weighting
from mtl_platform_plugins.weightings.trimmed_mean import TrimmedMean

from solver_weighting_cases import F64, tasks

J = torch.tensor([[1.0, 5.0], [2.0, -1.0], [10.0, 0.0], [3.0, 3.0]], dtype=F64)


def run(weighting, j, present=None):
    return call_weighting(weighting, torch.ones(j.shape[0], dtype=j.dtype), j, present=present)[1]


def test_trimmed_mean_hand_case():
    # column 0 sorted 1, 2, 3, 10 → keep 2, 3 → 2.5; column 1 sorted −1, 0, 3, 5 → keep 0, 3 → 1.5
    assert torch.equal(run(TrimmedMean(tasks(4)), J), torch.tensor([2.5, 1.5], dtype=F64))
    assert torch.equal(run(TrimmedMean(tasks(4), trim=0), J), torch.tensor([4.0, 1.75], dtype=F64))
    # trim 5 is capped at ⌊(4 − 1)/2⌋ = 1
    assert torch.equal(run(TrimmedMean(tasks(4), trim=5), J), torch.tensor([2.5, 1.5], dtype=F64))
    # three tasks, trim 1: the coordinate-wise median (2, 0)
    assert torch.equal(run(TrimmedMean(tasks(3)), J[:3]), torch.tensor([2.0, 0.0], dtype=F64))


def test_trimmed_mean_leaves_absent_tasks_out():
    present = torch.tensor([True, False, True, True])
    # present rows 1, 10, 3 / 5, 0, 3 (the absent row is zeroed by the engine): medians (3, 3)
    j = J.clone()
    j[1] = 0
    assert torch.equal(run(TrimmedMean(tasks(4)), j, present), torch.tensor([3.0, 3.0], dtype=F64))
