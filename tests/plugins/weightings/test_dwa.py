"""DWA (Liu et al., CVPR 2019, Eq. 1): its equation by hand, the state round trip, identical
ratios give equal weighting."""
import math

import torch

from mtl_platform_plugins.weightings.dwa import DWA


def test_dwa_matches_its_equation_by_hand():
    dwa = DWA(["a", "b"], T=2.0)
    assert torch.equal(dwa.weights(torch.ones(2)), torch.ones(2))
    dwa.epoch_end(torch.tensor([1.0, 2.0]))
    assert torch.equal(dwa.weights(torch.ones(2)), torch.ones(2))  # still < 2 epochs of history
    dwa.epoch_end(torch.tensor([0.5, 2.0]))
    # r = [0.5/1, 2/2] = [0.5, 1]; w = 2·softmax(r/2) = 2·e^{[0.25,0.5]} / (e^0.25 + e^0.5)
    e1, e2 = math.exp(0.25), math.exp(0.5)
    expected = torch.tensor([2 * e1 / (e1 + e2), 2 * e2 / (e1 + e2)])
    assert torch.allclose(dwa.weights(torch.ones(2)), expected)
    assert abs(dwa.weights(torch.ones(2)).sum().item() - 2) < 1e-6
    # the task whose loss falls more slowly ('b') gets the larger weight
    assert dwa.weights(torch.ones(2))[1] > dwa.weights(torch.ones(2))[0]


def test_dwa_state_round_trips():
    dwa = DWA(["a", "b", "c"])
    for losses in ([1.0, 2.0, 3.0], [0.9, 1.0, 3.0], [0.5, 0.9, 2.0]):
        dwa.epoch_end(torch.tensor(losses))
    fresh = DWA(["a", "b", "c"])
    fresh.load_state_dict(dwa.state_dict())
    assert torch.equal(fresh.weights(torch.ones(3)), dwa.weights(torch.ones(3)))


def test_dwa_with_identical_ratios_is_equal_weighting():
    dwa = DWA(["a", "b", "c"])
    dwa.epoch_end(torch.tensor([1.0, 2.0, 4.0]))
    dwa.epoch_end(torch.tensor([0.5, 1.0, 2.0]))
    assert torch.allclose(dwa.weights(torch.ones(3)), torch.ones(3))
