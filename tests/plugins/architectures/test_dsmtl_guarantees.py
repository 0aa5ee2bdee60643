"""DSMTL's safeness guarantees, checked on training losses (Yue, PhD thesis 2023, Theorems 6.5.1
and 6.5.3) on the synthetic regression generator with standardised targets: three sinc tasks,
task 2 with its own Z (unrelated), the thesis's SGD 0.02.

DSMTL-IL: each task's final training loss ≤ its STL training loss (individual); DSMTL-JL: the
average training loss ≤ min(STL, HPS) at the same budget (average). The theorems bound the
optima; the trained models at a fixed budget are what is measured (docs/dsmtl.md, "The
guarantees, measured"). With 20,000 samples and 30 epochs (configs/synthetic/sized_up_dsmtl.yaml)
both held on all 5 seeds: the slow test reproduces seed 0. At small budgets they did not hold
reliably (4,000 samples, 10 epochs, φ = d: IL's individual inequality on 0 of 3 seeds, JL's
on 1 of 3), so the fast test checks only what the individual guarantee rests on — the STL
solution is inside DSMTL-IL's search space: α_t = 0 gives back the STL models exactly — on a
benchmark where STL clearly beats predicting the mean (it did not on the raw targets).
"""
from pathlib import Path

import pytest
import torch
import yaml

from mtl_platform import registry, session
from mtl_platform.baselines import ensure_baselines, stl_config
from mtl_platform.checkpoint import load
from mtl_platform.config import read_yaml, resolve
from mtl_platform.experiment import build_architecture, build_domain

quiet = {"progress": False, "echo": lambda *a, **k: None}
ROOT = Path(__file__).resolve().parents[3]


def config(tmp_path, arch, seed):
    return {"domain": {"name": "synthetic_regression", "activations": ["sinc", "sinc", "sinc"], "unrelated": [2],
                       "train_samples": 4000, "val_samples": 200, "test_samples": 1000,
                       "hidden": [16, 16], "batch_size": 32},
            "architecture": arch, "weighting": "ew", "optimizer": {"name": "sgd", "lr": 0.02, "momentum": 0.0},
            "train": {"epochs": 10, "seed": seed, "device": "cpu", "progress": False},
            "output": {"root": str(tmp_path / "runs")}}


def train(tmp_path, raw):
    """Train ``raw``; return (resolved config, domain, trained model)."""
    path = tmp_path / f"{raw['architecture'] if isinstance(raw['architecture'], str) else 'run'}.yaml"
    path.write_text(yaml.safe_dump(raw))
    results = session.train(path, **quiet)
    reg, _ = registry.load(builtin_only=True)
    cfg = resolve(raw, reg)
    domain = build_domain(cfg, reg)
    model = build_architecture(cfg, reg, domain)
    model.load_state_dict(load(Path(results["run_dir"]) / ("stages/gated" if "stages" in results else "")
                               / "model.pt"))
    return cfg, domain, model


def losses(domain, model, split="train") -> dict[str, float]:
    """Mean squared error over a whole split (the training loss on ``train``)."""
    return {t: v["mse"] for t, v in domain.evaluate(model, split).items()}


def stl_losses(cfg, domain, split="train") -> dict[str, float]:
    reg, pm = registry.load(builtin_only=True)
    out = {}
    for task, entry in ensure_baselines(cfg, domain.task_names, reg, pm, echo=lambda *a: None).items():
        single = stl_config(cfg, task, reg)
        d = build_domain(single, reg)
        model = build_architecture(single, reg, d)
        model.load_state_dict(load(Path(entry["path"]) / "weights.pt"))
        out[task] = losses(d, model, split)[task]
    return out


def mean(values: dict) -> float:
    return sum(values.values()) / len(values)


def test_dsmtl_il_contains_the_stl_solution_on_a_non_degenerate_benchmark(tmp_path, one_thread):
    cfg, domain, il = train(tmp_path, config(tmp_path, "dsmtl_il", 0))  # φ = d: sinc generalises from 4,000
    stl = stl_losses(cfg, domain)
    # STL beats predicting the training mean clearly on test
    train_y = domain.dataset("train").get_batch(torch.arange(4000))[1]
    test_y = domain.dataset("test").get_batch(torch.arange(1000))[1]
    stl_test = stl_losses(cfg, domain, "test")
    for task in domain.task_names:
        mean_predictor = (test_y[task] - train_y[task].mean()).pow(2).mean().item()
        assert stl_test[task] < 0.7 * mean_predictor, (task, stl_test, mean_predictor)
    with torch.no_grad():  # α_t = 0: the frozen private parts alone are exactly the STL models
        for gate in il.gates.values():
            gate.fill_(-1e4)
    assert losses(domain, il) == pytest.approx(stl, rel=1e-5)


@pytest.mark.slow
def test_both_guarantees_hold_in_the_sized_up_setting(tmp_path, one_thread):
    """configs/synthetic/sized_up_dsmtl.yaml, seed 0 (the documented study's first seed)."""
    raw = read_yaml(ROOT / "configs" / "synthetic" / "sized_up_dsmtl.yaml")
    raw["train"].update(device="cpu", progress=False)
    raw["output"] = {"root": str(tmp_path / "runs")}
    raw["baselines"] = {"stl": False}
    cfg, domain, il = train(tmp_path, dict(raw, architecture="dsmtl_il"))
    stl = stl_losses(cfg, domain)
    final = losses(domain, il)
    assert all(final[t] <= stl[t] for t in domain.task_names), (final, stl)
    _, _, jl = train(tmp_path, dict(raw, architecture="dsmtl_jl"))
    _, _, hps = train(tmp_path, dict(raw, architecture="hps"))
    assert mean(losses(domain, jl)) <= min(mean(stl), mean(losses(domain, hps)))
