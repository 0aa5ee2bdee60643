"""The synthetic regression generator (thesis §5.4.11) and its domain."""
import math

import pytest
import torch

from mtl_platform import session
from mtl_platform.errors import UserError
from mtl_platform_plugins.domains.synthetic_regression.data import activate, generate
from mtl_platform_plugins.domains.synthetic_regression.domain import SyntheticRegression

from conftest import make_domain


def domain(**overrides):
    return make_domain(SyntheticRegression, **overrides)


def test_activations_by_hand():
    u = torch.tensor([0.0, 1.0, -2.0])
    assert torch.allclose(activate("sinc", u), torch.tensor([1.0, math.sin(1.0), math.sin(-2.0) / -2.0]))
    assert torch.allclose(activate("bent", u), torch.tensor([0.0, (math.sqrt(2) - 1) / 2 + 1, (math.sqrt(5) - 1) / 2 - 2]))
    assert torch.equal(activate("square", u), torch.tensor([0.0, 1.0, 4.0]))


def test_targets_follow_the_formula_and_relatedness():
    n = {"train": 4000}
    (x, y), = generate(n, ["square", "square", "square"], [1.0, 2.0, 1.0], unrelated=[2], dim=50, seed=3).values()
    assert x.shape == (4000, 50) and y.shape == (4000, 3)
    assert abs(x.var().item() - 10.0) < 0.3  # N(0, 10) read as a variance
    assert torch.allclose(y[:, 1].mean() / y[:, 0].mean(), torch.tensor(2.0), rtol=0.1)  # the scale
    corr = torch.corrcoef(y.T)
    assert corr[0, 1] > 0.5  # related: shared Z
    assert abs(corr[0, 2]) < 0.2  # unrelated: its own Z


def test_generation_is_deterministic_and_splits_differ():
    a = generate({"train": 8, "val": 8}, ["sinc"], [1.0], [], dim=10, seed=1)
    b = generate({"train": 8, "val": 8}, ["sinc"], [1.0], [], dim=10, seed=1)
    assert torch.equal(a["train"][1], b["train"][1]) and not torch.equal(a["train"][0], a["val"][0])


def test_domain_shapes_and_bad_parameters():
    d = domain(activations=["sinc", "bent"], train_samples=20)
    d.prepare()
    x, y = d.dataset("train").get_batch(torch.arange(5))
    enc = d.encoder_factory()
    assert x.shape == (5, 200) and set(y) == {"task0", "task1"}
    assert d.head_factory("task0")(enc(x)).shape == (5,)
    assert enc.stage_shapes == ((64,), (64,), (32,))
    with pytest.raises(UserError, match="domain.unrelated: task index 5"):
        domain(unrelated=[5])
    with pytest.raises(UserError, match="domain.scales: got 1 values for 3 tasks"):
        domain(scales=[1.0])


def test_it_trains_from_yaml(write_config):
    cfg = write_config({"domain": {"name": "synthetic_regression", "activations": ["sinc", "sinc", "square"],
                                   "train_samples": 256, "batch_size": 32}, "train.epochs": 2,
                        "baselines": {"stl": True}})
    results = session.train(cfg, progress=False, echo=lambda *a, **k: None)
    assert set(results["mtl"]) == {"task0", "task1", "task2"}
    assert all(results["mtl"][t]["mse"] >= 0 for t in results["mtl"])
    assert results["spec"]["task0"]["mse"] == {"higher_is_better": False, "in_delta_p": True}
