"""The trainer end to end on tiny MultiMNIST: files, resume bit-for-bit, non-finite stop,
early stopping, seeds, checkpoints that load with weights_only."""
import json
import types

import pytest
import torch

from mtl_platform import runs, session
from mtl_platform.checkpoint import load
from mtl_platform.hookspecs import hookimpl
from mtl_platform.trainer import NonFiniteLoss
from mtl_platform_plugins.domains.multi_mnist.domain import MultiMNIST

from conftest import InterruptAt, run_dirs

quiet = {"progress": False, "echo": lambda *a, **k: None}


def metrics_of(run_dir):
    """Everything learned: per-epoch losses, weights and metrics (wall time left out)."""
    rows = runs.read_jsonl(run_dir / runs.METRICS_FILE)
    return [{k: v for k, v in r.items() if k != "time"} for r in rows]


def test_a_run_writes_config_metrics_checkpoint_and_results(write_config, tmp_path):
    results = session.train(write_config({"train.epochs": 2}), **quiet)
    (run_dir,) = run_dirs(tmp_path / "runs")
    assert run_dir.name.endswith("_tiny")
    saved = (run_dir / "config.yaml").read_text()
    assert "batch_size: 32" in saved and "lr: 0.001" in saved  # resolved, defaults filled
    rows = metrics_of(run_dir)
    assert [r["epoch"] for r in rows] == [0, 1]
    assert set(rows[0]["val"]) == {"left", "right"} and 0.0 <= rows[0]["test"]["left"]["accuracy"] <= 1.0
    assert rows[0]["weights"] == {"left": 1.0, "right": 1.0}
    assert rows[1]["train"]["loss"]["left"] < rows[0]["train"]["loss"]["left"]  # it learns
    ckpt = load(run_dir / "checkpoint.pt")  # weights_only=True round trip
    assert ckpt["epoch"] == 2 and ckpt["batch"] == 0 and ckpt["step"] == 12
    assert json.loads((run_dir / "results.json").read_text())["mtl"] == results["mtl"] == rows[1]["test"]
    assert results["stl"] is None and not (run_dir / "report.md").exists()


@pytest.mark.parametrize("weighting, interrupt_step, checkpoint_every, accumulate", [
    ("dwa", 12, 0, 1),   # after epoch 2 of 4 (6 steps per epoch), DWA's history must survive
    ("uw", 9, 3, 1),     # in the middle of epoch 2, UW's parameters and Adam state must survive
    ("pcgrad", 10, 2, 2),  # the Gramian path, PCGrad's random order, accumulation over 2 micro-batches
])
def test_resume_continues_bit_for_bit(write_config, tmp_path, weighting, interrupt_step, checkpoint_every,
                                      accumulate):
    cfg = write_config({"train.epochs": 4, "train.checkpoint_every": checkpoint_every, "weighting": weighting,
                        "train.accumulate": accumulate,
                        "domain.dropout": 0.5})  # dropout: the RNG state must be restored too
    full = session.train(cfg, **quiet)
    (full_dir,) = run_dirs(tmp_path / "runs")
    with pytest.raises(KeyboardInterrupt):
        session.train(cfg, extra_plugins=[InterruptAt(interrupt_step)], **quiet)
    cut_dir = next(d for d in run_dirs(tmp_path / "runs") if d != full_dir)
    state = load(cut_dir / "checkpoint.pt")
    assert state["step"] == interrupt_step
    assert not (cut_dir / "results.json").exists()
    resumed = session.train(resume=cut_dir, **quiet)
    assert resumed["mtl"] == full["mtl"]
    assert metrics_of(cut_dir) == metrics_of(full_dir)  # no duplicated or missing rows
    a, b = load(full_dir / "model.pt"), load(cut_dir / "model.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_of_a_run_killed_before_its_first_checkpoint_starts_over(write_config, tmp_path):
    messages = []
    cfg = write_config({"train.epochs": 1})
    full = session.train(cfg, **quiet)
    (full_dir,) = run_dirs(tmp_path / "runs")
    (full_dir / "checkpoint.pt").unlink()
    (full_dir / "results.json").unlink()
    again = session.train(resume=full_dir, progress=False, echo=messages.append)
    assert any("starting it again from scratch" in m for m in messages)
    assert again["mtl"] == full["mtl"] and len(metrics_of(full_dir)) == 1


class PoisonedMultiMNIST(MultiMNIST):
    """MultiMNIST whose 'right' loss becomes infinite from global step 8 on."""

    name = "poisoned_mnist"

    def __init__(self, seed=0, **params):
        super().__init__(seed, **params)
        self.calls = 0

    def losses(self, batch, model):
        out = super().losses(batch, model)
        if model.training:
            if self.calls >= 8:
                out["right"] = out["right"] * float("inf")
            self.calls += 1
        return out


poison_plugin = types.ModuleType("poison_plugin")
poison_plugin.mtl_register = hookimpl(lambda registry: registry.add_domain(PoisonedMultiMNIST))


def test_a_non_finite_loss_stops_naming_task_and_step_and_keeps_the_checkpoint(write_config, tmp_path):
    cfg = write_config({"domain.name": "poisoned_mnist", "train.epochs": 3, "train.log_every": 100})
    with pytest.raises(NonFiniteLoss, match=r"non-finite loss of task 'right' at step 8 \(main, epoch 2\)"):
        session.train(cfg, extra_plugins=[poison_plugin], **quiet)
    (run_dir,) = run_dirs(tmp_path / "runs")
    state = load(run_dir / "checkpoint.pt")
    assert state["epoch"] == 1 and state["step"] == 6  # the last good one, from epoch 1
    assert all(torch.isfinite(v).all() for v in state["model"].values())
    assert len(metrics_of(run_dir)) == 1


def test_the_non_finite_check_is_not_a_per_step_host_sync(write_config, tmp_path, monkeypatch):
    """The guard reads the device flag once per log interval and at epoch ends, not every step."""
    from mtl_platform import trainer as trainer_mod

    calls = []
    original = trainer_mod.Trainer.check_finite
    monkeypatch.setattr(trainer_mod.Trainer, "check_finite", lambda self: calls.append(1) or original(self))
    session.train(write_config({"train.epochs": 2, "train.log_every": 4}), **quiet)
    # 12 steps: log checks at steps 4, 8, 12; epoch-end checks 2; checkpoint checks 2
    assert len(calls) == 3 + 2 + 2


class StopAfterFirstEpoch:
    __name__ = "early_stop"

    @hookimpl
    def mtl_epoch_end(self, run, epoch, metrics):
        if run.stage == "main" and epoch == 0:
            assert "val" in metrics
            run.request_stop("validation plateau")


def test_a_hook_can_stop_training_early(write_config, tmp_path):
    results = session.train(write_config({"train.epochs": 5}), extra_plugins=[StopAfterFirstEpoch()], **quiet)
    assert results["epochs_trained"] == 1
    (run_dir,) = run_dirs(tmp_path / "runs")
    assert metrics_of(run_dir)[0]["stopped"] == "validation plateau"


def test_seeds_reproduce_and_differ(write_config):
    a = session.train(write_config({"train.epochs": 1, "train.seed": 1}), **quiet)
    b = session.train(write_config({"train.epochs": 1, "train.seed": 1}), **quiet)
    c = session.train(write_config({"train.epochs": 1, "train.seed": 2}), **quiet)
    assert a["mtl"] == b["mtl"]
    assert a["mtl"] != c["mtl"]
    assert a["group"] == c["group"]  # seeds of one experiment


def test_select_val_reports_the_best_validation_epoch(write_config, tmp_path):
    results = session.train(write_config({"train.epochs": 3, "train.select": "val"}), **quiet)
    (run_dir,) = run_dirs(tmp_path / "runs")
    rows = metrics_of(run_dir)
    first = rows[0]["val"]

    def score(val):  # Δp against the first epoch, over the accuracies
        return sum(val[t]["accuracy"] / first[t]["accuracy"] - 1 for t in val) / len(val)

    best = max(rows, key=lambda r: (score(r["val"]), -r["epoch"]))
    assert results["epoch"] == best["epoch"] and results["mtl"] == best["test"]
    best_weights = load(run_dir / "best.pt")
    assert set(best_weights) == set(load(run_dir / "model.pt"))


@pytest.mark.parametrize("optimizer, scheduler, lrs", [
    ({"name": "sgd", "lr": 0.1}, {"name": "step", "step_size": 1, "gamma": 0.5}, [0.1, 0.05, 0.025]),
    ({"name": "adamw", "lr": 0.01}, {"name": "cosine", "eta_min": 0.0}, [0.01, 0.0075, 0.0025]),
    ({"name": "adam", "lr": 0.01}, {"name": "none"}, [0.01, 0.01, 0.01]),
])
def test_optimizers_and_per_epoch_schedules(write_config, tmp_path, optimizer, scheduler, lrs):
    session.train(write_config({"optimizer": optimizer, "scheduler": scheduler, "train.epochs": 3}), **quiet)
    (run_dir,) = run_dirs(tmp_path / "runs")
    assert [r["lr"] for r in metrics_of(run_dir)] == pytest.approx(lrs)
    state = load(run_dir / "checkpoint.pt")
    assert state["optimizers"][0]["param_groups"][0]["lr"] == pytest.approx(
        {"step": 0.0125, "cosine": 0.0, "none": 0.01}[scheduler["name"]])


def test_mixed_precision_and_accumulation_train(write_config, tmp_path):
    results = session.train(write_config({"train.amp": "bf16", "train.accumulate": 3, "weighting": "gh"}), **quiet)
    assert all(0.0 <= results["mtl"][t]["accuracy"] <= 1.0 for t in ("left", "right"))
    (run_dir,) = run_dirs(tmp_path / "runs")
    assert load(run_dir / "checkpoint.pt")["micro_steps"] == 12  # 6 micro-batches an epoch, 2 optimizer steps
