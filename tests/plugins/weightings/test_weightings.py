"""What every loss weighting (the registered weightings that need only the losses) gives: finite,
positive weights of the right shape. Each one's own tests are in test_<name>.py."""
import pytest
import torch

from mtl_platform import registry

from conftest import weighting_args


@pytest.fixture(scope="module")
def weightings():
    from mtl_platform.contracts import Needs

    reg, _ = registry.load()
    return {c.name: c.cls for c in reg.components("weighting") if c.cls.needs is Needs.LOSSES}


@pytest.mark.parametrize("m", [1, 2, 5])
def test_every_loss_weighting_gives_finite_positive_weights_of_the_right_shape(weightings, m):
    losses = torch.rand(m) + 0.1
    for name, cls in weightings.items():
        tasks = [f"t{i}" for i in range(m)]
        w = cls(tasks, **weighting_args(name, tasks)).weights(losses)
        assert w.shape == (m,), name
        assert torch.isfinite(w).all() and (w > 0).all(), name
