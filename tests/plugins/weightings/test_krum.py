"""Krum and Multi-Krum (Blanchard et al. 2017): hand-computed scores, ties, plain distances,
refused configurations."""
import pytest
import torch

from mtl_platform.errors import UserError
from mtl_platform_plugins.weightings.krum import Krum

from solver_weighting_cases import F64, run, tasks

# p1 = (0,0), p2 = (1,0), p3 = (0,2), p4 = (5,5); squared distances d12 = 1, d13 = 4, d14 = 50,
# d23 = 5, d24 = 41, d34 = 34
POINTS = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0], [5.0, 5.0]], dtype=F64)


def test_krum_hand_scores():
    # f = 0, n = 4: n − f − 2 = 2 neighbours: s1 = 1 + 4 = 5, s2 = 1 + 5 = 6, s3 = 4 + 5 = 9, s4 = 34 + 41 = 75
    w, d = run(Krum(tasks(4)), POINTS)
    assert torch.equal(w, torch.tensor([1.0, 0.0, 0.0, 0.0], dtype=F64))
    w, d = run(Krum(tasks(4), n_selected=2), POINTS)                  # Multi-Krum: mean of p1, p2
    assert torch.equal(w, torch.tensor([0.5, 0.5, 0.0, 0.0], dtype=F64))
    assert torch.allclose(d, torch.tensor([0.5, 0.0], dtype=F64))
    # plain distances: s1 = 1 + 2, s2 = 1 + √5, s3 = 2 + √5, s4 = √34 + √41: the same order here
    w, _ = run(Krum(tasks(4), n_selected=3, squared=False), POINTS)
    assert torch.equal(w, torch.tensor([1 / 3, 1 / 3, 1 / 3, 0.0], dtype=F64))


def test_krum_selects_every_tied_score():
    # f = 1: one neighbour, s1 = s2 = 1 (mutual nearest neighbours), s3 = 4, s4 = 34
    w, _ = run(Krum(tasks(4), n_byzantine=1), POINTS)
    assert torch.equal(w, torch.tensor([0.5, 0.5, 0.0, 0.0], dtype=F64))
    # an outlier far away never gets selected, whatever its place
    for place in range(4):
        j = POINTS.clone()
        j[[place, 3]] = j[[3, place]]
        w, _ = run(Krum(tasks(4)), j)
        assert w[place] == 0


def test_krum_refuses_impossible_configurations():
    with pytest.raises(UserError, match="n_byzantine"):
        Krum(tasks(4), n_byzantine=2)
    with pytest.raises(UserError, match="n_selected"):
        Krum(tasks(3), n_selected=4)
    w, _ = run(Krum(tasks(2)), POINTS[:2])                            # no neighbour to score with: the mean
    assert torch.equal(w, torch.tensor([0.5, 0.5], dtype=F64))
