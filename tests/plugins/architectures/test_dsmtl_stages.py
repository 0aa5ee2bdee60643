"""DSMTL-IL's two stages and DSMTL-AL's search → derive → retrain, as runs."""
import json

import pytest
import torch
import yaml

from mtl_platform import cli, session
from mtl_platform.checkpoint import load
from mtl_platform_plugins.architectures.hps import HPS

from conftest import Recorder, run_dirs

BASE = {
    "domain": {"name": "synthetic_regression", "activations": ["sinc", "sinc", "sinc"], "unrelated": [2],
               "train_samples": 96, "val_samples": 32, "test_samples": 32, "hidden": [8, 8], "batch_size": 16},
    "optimizer": {"name": "adam", "lr": 1.0e-2},
    "train": {"epochs": 2, "seed": 0, "device": "cpu", "progress": False, "log_every": 2},
}


def write(tmp_path, architecture, **sections):
    cfg = dict(BASE, architecture=architecture, output={"root": str(tmp_path / "runs")}, **sections)
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_dsmtl_il_reuses_cached_stl_models_and_trains_only_public_encoder_and_gates(tmp_path, one_thread):
    cfg = write(tmp_path, "dsmtl_il", baselines={"stl": True})
    first = session.train(cfg, progress=False, echo=lambda *a: None)
    recorder = Recorder()
    messages = []
    second = session.train(cfg, progress=False, echo=messages.append, extra_plugins=[recorder])
    assert second["mtl"] == first["mtl"]
    # both the Δp baselines and the STL stage reused the cache: the only training is the gated stage
    assert recorder.starts == ["gated"]
    assert sum("reusing cached" in str(m) for m in messages) == 3  # once per task, not again by the STL stage
    assert any("the single-task models are the run's STL baselines" in str(m) for m in messages)
    run_dir = run_dirs(tmp_path / "runs")[-1]
    stl = json.loads((run_dir / "stages" / "stl" / "results.json").read_text())["models"]
    gated = load(run_dir / "stages" / "gated" / "model.pt")
    for task, entry in stl.items():
        encoder, head = HPS.split_task_state(load(entry["weights"]), task)  # the STL model's architecture
        assert encoder and head
        # the private parts are the STL models, untouched by the gated stage
        assert all(torch.equal(gated[f"private.{task}.{k}"], v) for k, v in encoder.items())
        assert all(torch.equal(gated[f"heads.{task}.{k}"], v) for k, v in head.items())
        assert gated[f"gates.{task}"] != 0  # the gate did train
    counts = second["parameters"]
    assert counts["frozen"] == sum(v.numel() for k, v in gated.items() if k.startswith(("private.", "heads.")))
    assert counts["tasks"] == {t: 1 for t in stl}
    assert "gates α_t task0 " in "\n".join(str(m) for m in messages)


def test_dsmtl_il_frozen_parts_stay_in_eval_mode():
    from mtl_platform_plugins.architectures.dsmtl_il import DSMTLIL
    from mtl_platform_plugins.domains.synthetic_regression.domain import SyntheticRegression

    from conftest import make_domain

    d = make_domain(SyntheticRegression, train_samples=16)
    model = DSMTLIL(d.task_names, d.encoder_factory, d.head_factory).train()
    assert model.public.training and not model.private.training and not model.heads.training
    assert all(not p.requires_grad for p in model.frozen_parameters())


def test_dsmtl_al_learns_task_weights_and_retrains_the_gated_tree_with_them(tmp_path, one_thread):
    cfg = write(tmp_path, {"name": "dsmtl_al", "search": {"epochs": 2, "alpha_lr": 0.05}})
    results = session.train(cfg, progress=False, echo=lambda *a: None)
    run_dir = run_dirs(tmp_path / "runs")[-1]
    derived = json.loads((run_dir / "stages" / "derive" / "architecture.json").read_text())
    weights = derived["task_weights"]
    assert sum(weights.values()) == pytest.approx(1.0) and len(set(weights.values())) == 3  # learned, not uniform
    search = load(run_dir / "stages" / "search" / "model.pt")
    assert torch.allclose(torch.softmax(search["task_logits"], 0), torch.tensor(list(weights.values())))
    assert derived["architecture"] == {"name": "tree", "branch_points": derived["branch_points"],
                                       "public_gate": True}
    assert derived["weighting"] == {"name": "fixed", "weights": weights}  # what the search says retraining needs
    assert results["weighting"] == {"name": "fixed", "weights": weights}  # the default: learned weights
    rows = [json.loads(x) for x in (run_dir / "stages" / "retrain" / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["weights"] == pytest.approx(weights)  # what retraining applied


def test_a_fixed_weighting_without_weights_is_a_one_line_error(tmp_path, capsys):
    cfg = write(tmp_path, "hps", weighting={"name": "fixed"})
    with pytest.raises(SystemExit) as exc:
        cli.main(["train", str(cfg)])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mtl: error: weighting.weights: required") and "\n" not in err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
