"""The synthetic regression generator (thesis §5.4.11) and its domain."""
import math
from pathlib import Path

import pytest
import torch
import yaml

from mtl_platform import registry, session
from mtl_platform.config import read_yaml, resolve
from mtl_platform.errors import UserError
from mtl_platform.experiment import build_domain
from mtl_platform_plugins.domains.synthetic_regression.data import activate, generate, standardise
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
    (x, y), = generate(n, ["square", "square", "square"], unrelated=[2], dim=50, seed=3).values()
    assert x.shape == (4000, 50) and y.shape == (4000, 3)
    assert abs(x.var().item() - 10.0) < 0.3  # N(0, 10) read as a variance
    assert y.mean().item() == pytest.approx(12 * 50 / 50 ** 2, rel=0.1)  # E[u²] = (10 + 2)·|Z|²/φ², φ = d
    corr = torch.corrcoef(y.T)
    assert corr[0, 1] > 0.5  # related: shared Z
    assert abs(corr[0, 2]) < 0.2  # unrelated: its own Z


def test_phi_spreads_u():
    (_, y), = generate({"train": 4000}, ["square"], [], dim=50, seed=3, phi=5.0).values()
    assert y.mean().item() == pytest.approx(12 * 50 / 5.0 ** 2, rel=0.1)  # var(u) = 12·d/φ²


def test_generation_is_deterministic_and_splits_differ():
    a = generate({"train": 8, "val": 8}, ["sinc"], [], dim=10, seed=1)
    b = generate({"train": 8, "val": 8}, ["sinc"], [], dim=10, seed=1)
    assert torch.equal(a["train"][1], b["train"][1]) and not torch.equal(a["train"][0], a["val"][0])


def test_targets_are_standardised_with_the_training_splits_statistics_only():
    raw = generate({"train": 500, "val": 300, "test": 300}, ["sinc", "bent", "square"], [], dim=20, seed=2)
    data, mean, std = standardise(raw, [1.0, 2.0, 1.0])
    a = raw["train"][1]
    assert torch.allclose(mean, a.mean(0)) and torch.allclose(std, a.std(0, unbiased=False))
    train = data["train"][1]
    assert torch.allclose(train.mean(0), torch.zeros(3), atol=1e-5)
    assert torch.allclose(train.std(0, unbiased=False), torch.tensor([1.0, 2.0, 1.0]), atol=1e-5)  # s_t = the std
    for split in ("val", "test"):  # the same constants, not the split's own statistics
        assert torch.allclose(data[split][1], torch.tensor([1.0, 2.0, 1.0]) * (raw[split][1] - mean) / std)
        assert torch.equal(data[split][0], raw[split][0])
    with pytest.raises(ValueError, match="constant"):
        standardise({"train": (a[:1], a[:1])}, [1.0] * 3)


def test_the_raw_sinc_target_is_degenerate_and_standardising_makes_sinc_and_square_one_function():
    """Why the targets are standardised, and what that leaves (data.py's docstring): at φ = d
    raw sinc is nearly constant; on one u, standardised sinc and square correlate at −1."""
    raw = generate({"train": 2000}, ["sinc", "square"], [], dim=200, seed=0)
    a = raw["train"][1]
    assert 0.98 < a[:, 0].mean() < 1.0 and a[:, 0].var() < 1e-3  # mean ≈ 0.99, variance ≈ 2e-4
    u = torch.randn(20000) * math.sqrt(12 * 200) / 200  # u's law at φ = d
    assert torch.corrcoef(torch.stack([activate("sinc", u), activate("square", u)]))[0, 1] < -0.99
    u = torch.randn(20000) * math.sqrt(12 * 200) / 16.0  # φ = 16: sinc oscillates
    assert torch.corrcoef(torch.stack([activate("sinc", u), activate("square", u)]))[0, 1] > -0.75  # measured −0.66


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
    with pytest.raises(UserError, match=r"domain.phi: got 0.0, expected finite float > 0"):
        domain(phi=0.0)


SYNTHETIC = sorted((Path(__file__).resolve().parents[4] / "configs" / "synthetic").glob("*.yaml"))


@pytest.mark.parametrize("path", SYNTHETIC, ids=lambda p: p.name)
def test_synthetic_configs_have_unit_variance_training_targets(path):
    reg, _ = registry.load(builtin_only=True)
    cfg = resolve(read_yaml(path), reg, name=path.stem)
    d = build_domain(cfg, reg)
    d.prepare()
    x, y = d.dataset("train").get_batch(torch.arange(cfg["domain"]["train_samples"]))
    scales = cfg["domain"]["scales"] or [1.0] * len(y)
    for (task, target), s in zip(sorted(y.items()), scales):
        assert target.mean().item() == pytest.approx(0.0, abs=1e-5), task
        assert target.std(unbiased=False).item() == pytest.approx(s, rel=1e-4), task


@pytest.mark.parametrize("activation", ["sinc", "square"])
def test_a_trained_single_task_model_clearly_beats_the_mean_predictor(tmp_path, activation, one_thread):
    """Non-degeneracy. On the raw targets (the code before the standardisation) this failed for
    sinc: test MSE 0.0136 against the mean predictor's 0.00017."""
    cfg = {"domain": {"name": "synthetic_regression", "activations": [activation], "train_samples": 4000,
                      "val_samples": 200, "test_samples": 1000, "hidden": [16, 16], "batch_size": 32},
           "architecture": "hps", "weighting": "ew", "optimizer": {"name": "adam", "lr": 3.0e-3},
           "train": {"epochs": 5, "seed": 0, "device": "cpu", "progress": False},
           "output": {"root": str(tmp_path / "runs")}}
    path = tmp_path / "stl.yaml"
    path.write_text(yaml.safe_dump(cfg))
    results = session.train(path, progress=False, echo=lambda *a, **k: None)
    reg, _ = registry.load(builtin_only=True)
    d = build_domain(resolve(cfg, reg), reg)
    d.prepare()
    train_y = d.dataset("train").get_batch(torch.arange(4000))[1]["task0"]
    test_y = d.dataset("test").get_batch(torch.arange(1000))[1]["task0"]
    mean_predictor = (test_y - train_y.mean()).pow(2).mean().item()
    assert results["mtl"]["task0"]["mse"] < 0.7 * mean_predictor, (results["mtl"], mean_predictor)


def test_it_trains_from_yaml(write_config):
    cfg = write_config({"domain": {"name": "synthetic_regression", "activations": ["sinc", "sinc", "square"],
                                   "train_samples": 256, "batch_size": 32}, "train.epochs": 2,
                        "baselines": {"stl": True}})
    results = session.train(cfg, progress=False, echo=lambda *a, **k: None)
    assert set(results["mtl"]) == {"task0", "task1", "task2"}
    assert all(results["mtl"][t]["mse"] >= 0 for t in results["mtl"])
    assert results["spec"]["task0"]["mse"] == {"higher_is_better": False, "in_delta_p": True}
