"""Mixed precision with gradient surgery (issue 20, part 3): every registered weighting trains
a few steps under ``train.amp: bf16`` on the CPU, and under ``fp16`` with the CPU GradScaler,
and ends with finite parameters; the scaler's scale reaches the engine unscaled (the Gramian
the weighting sees is that of the true losses)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from conftest import weighting_args
from mtl_platform import registry as registry_mod
from mtl_platform import session

TASKS = ["task0", "task1", "task2"]
CONFIG = {
    "domain": {"name": "synthetic_regression", "dim": 8, "hidden": [16, 8], "train_samples": 24,
               "val_samples": 8, "test_samples": 8, "batch_size": 8, "eval_batch_size": 8},
    "architecture": "hps",
    "optimizer": {"name": "sgd", "lr": 0.05},
    "train": {"epochs": 1, "seed": 0, "device": "cpu", "progress": False, "log_every": 1},
}


def weightings() -> list[str]:
    registry = registry_mod.load(builtin_only=True)[0]
    return sorted(c.name for c in registry.components("weighting"))


def write(tmp_path: Path, weighting: str, amp: str) -> Path:
    cfg = json.loads(json.dumps(CONFIG))
    cfg["weighting"] = {"name": weighting, **weighting_args(weighting, TASKS)}
    cfg["train"]["amp"] = amp
    cfg["output"] = {"root": str(tmp_path / "runs")}
    path = tmp_path / f"{weighting}_{amp}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def finite_model(results: dict) -> bool:
    state = torch.load(Path(results["run_dir"]) / "model.pt", weights_only=True)
    return all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())


@pytest.mark.parametrize("weighting", weightings())
@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_every_weighting_trains_with_mixed_precision(tmp_path, one_thread, weighting, amp):
    if amp == "fp16":
        try:
            with torch.autocast("cpu", dtype=torch.float16):
                torch.ones(2, 2) @ torch.ones(2, 2)
            torch.amp.GradScaler("cpu")
        except (RuntimeError, TypeError, AttributeError) as exc:  # an older torch
            pytest.skip(f"fp16 autocast with a GradScaler is unavailable on this CPU torch: {exc}")
    results = session.train(write(tmp_path, weighting, amp), echo=lambda *a, **k: None)
    assert finite_model(results)
    assert all(v == v for t in TASKS for v in results["test"][t].values())  # metrics are not NaN


def overflowing_steps(name: str, steps: int = 3):
    """``steps`` fp16 steps of an HPS model whose GradScaler starts at 2^40, so every step's
    scaled gradients overflow and the scaler skips it; returns (weighting, model, scaler)."""
    from mtl_platform.gradients import GradientEngine

    tasks = ["a", "b"]
    torch.manual_seed(0)
    registry = registry_mod.load(builtin_only=True)[0]
    arch = registry.get("architecture", "hps").cls
    model = arch(tasks, lambda: torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU()),
                 lambda t: torch.nn.Linear(8, 1))
    weighting = registry.get("weighting", name).cls(tasks, **weighting_args(name, tasks))
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 40)
    engine = GradientEngine(model, weighting, tasks, scaler=scaler, echo=lambda m: None)
    opt = torch.optim.SGD(list(model.parameters()) + list(weighting.parameters()), lr=0.1)
    x, y = torch.randn(8, 4) * 1e3, torch.randn(8)

    def losses():
        out = model(x)
        return {t: ((out[t].squeeze(-1).float() - y) ** 2).mean() for t in tasks}
    for _ in range(steps):
        with torch.autocast("cpu", dtype=torch.float16):
            current = losses()
        engine.backward(current)
        engine.step([opt], closure=losses)
    return weighting, model, scaler


@pytest.mark.parametrize("weighting", weightings())
def test_a_step_the_scaler_skips_leaves_the_weighting_state_finite(one_thread, weighting):
    """An fp16 overflow (scaled gradients inf) must not leave NaN in a weighting's state: before
    the engine restored it, DB-MTL's gradient EMA and equilibrium's weights stayed NaN for good."""
    w, model, scaler = overflowing_steps(weighting)
    assert scaler.get_scale() == 2.0 ** 37  # the control: three steps overflowed and were skipped
    assert all(torch.isfinite(p).all() for p in model.parameters())
    for name, buf in w.named_buffers():
        assert not buf.is_floating_point() or torch.isfinite(buf).all(), f"{weighting}: buffer {name}"
