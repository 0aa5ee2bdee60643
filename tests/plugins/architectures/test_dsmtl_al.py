"""DSMTL-AL (Yue, PhD thesis 2023, §6.6): search → derive → retrain as a run; the learnt task
weights are what retraining applies."""
import json

import pytest
import torch

from mtl_platform import session
from mtl_platform.checkpoint import load

from conftest import run_dirs
from synthetic_runs import write


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
