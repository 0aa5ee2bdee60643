"""EW: the plain sum."""
import torch

from mtl_platform_plugins.weightings.ew import EW


def test_ew_is_the_plain_sum():
    assert torch.equal(EW(["a", "b", "c"]).weights(torch.tensor([3.0, 0.1, 7.0])), torch.ones(3))
