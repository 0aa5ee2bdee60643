"""Each derived decision's margin (softmax gap, entropy), the one-line warning when a decision
is within noise, and default architecture learning rates that move α in a short search
(issue 15, item 10; mtl_platform/stages/margins.py)."""
import json
import math
from pathlib import Path

import pytest
import torch
import yaml

from mtl_platform import registry, session
from mtl_platform.config import resolve
from mtl_platform.errors import UserError
from mtl_platform.stages import margins
from mtl_platform_plugins.architectures.conal import CoNAL
from mtl_platform_plugins.architectures.ltb import LTB
from mtl_platform_plugins.domains.synthetic_regression.domain import SyntheticRegression

from conftest import make_domain


def test_margin_equals_the_hand_computed_gap_and_entropy():
    m = margins.margin([1 / 6, 2 / 6, 3 / 6])
    assert m["chosen"] == 2
    assert m["gap"] == pytest.approx(1 / 6)
    assert m["entropy"] == pytest.approx(-(1 / 6 * math.log(1 / 6) + 2 / 6 * math.log(2 / 6) + 0.5 * math.log(0.5)))
    assert margins.margin([0.5, 0.5])["gap"] == 0.0 and margins.margin([0.5, 0.5])["chosen"] == 0  # tie: lowest


def test_conal_decisions_are_softmax_alpha_and_their_margins_are_recorded():
    d = make_domain(SyntheticRegression, activations=["bent"] * 2, train_samples=16, hidden=[4, 4])
    model = CoNAL(d.task_names, d.encoder_factory, d.head_factory)
    with torch.no_grad():
        model.alpha["task0"].copy_(torch.log(torch.tensor([1.0, 2.0, 3.0])))  # softmax: 1/6, 2/6, 3/6
    lines = []
    derived = margins.record(model.derive(), model.decisions(), 0.05, "derive", lines.append)
    assert derived["margins"]["task0"]["gap"] == pytest.approx(1 / 6)
    assert derived["margins"]["task0"]["within_noise"] is False
    assert derived["margins"]["task1"]["gap"] == 0.0 and derived["margins"]["task1"]["within_noise"] is True
    assert len(lines) == 1 and lines[0].startswith("warning: derive: 1 of 2 decisions within noise")
    assert "task1 gap 0" in lines[0] and "architecture.search.alpha_lr" in lines[0] and "task0" not in lines[0]
    assert margins.warning_line(derived["margins"], 0.0, "derive") is None  # nothing is below a threshold of 0


def test_ltb_decisions_are_the_parent_distributions_on_the_tasks_paths():
    d = make_domain(SyntheticRegression, activations=["bent"] * 2, train_samples=16, hidden=[4, 4, 4])
    model = LTB(d.task_names, d.encoder_factory, d.head_factory, width=3)
    with torch.no_grad():
        model.logits[0].zero_()
        model.logits[1].copy_(torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, 2.0]]))  # task0 ← node 0, task1 ← node 2
    got = model.decisions()
    e = math.exp(2.0)
    assert set(got) == {"stage 2 node 0 (task0)", "stage 2 node 2 (task1)", "stage 3 node 0 (task0)",
                        "stage 3 node 1 (task1)"}
    assert margins.margin(got["stage 3 node 0 (task0)"])["gap"] == pytest.approx((e - 1) / (e + 2))
    assert margins.margin(got["stage 2 node 0 (task0)"])["gap"] == 0.0  # uniform parents


def tiny(tmp_path, arch: dict, name: str = "tiny") -> Path:
    """Three `bent` tasks (task 2 with its own Z), 1,024 samples, 8-unit stages; a one-epoch retrain."""
    cfg = {"domain": {"name": "synthetic_regression", "activations": ["bent", "bent", "bent"], "unrelated": [2],
                      "train_samples": 1024, "val_samples": 64, "test_samples": 64, "hidden": [8, 8],
                      "batch_size": 32},
           "architecture": arch, "optimizer": {"name": "adam", "lr": 1.0e-3},
           "train": {"epochs": 1, "seed": 0, "device": "cpu", "progress": False},
           "output": {"root": str(tmp_path / "runs")}}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def train(path: Path) -> tuple[dict, list[str]]:
    lines = []
    results = session.train(path, progress=False, echo=lambda *a, **k: lines.append(" ".join(map(str, a))))
    return results, [line for line in lines if line.startswith("warning:")]


def test_the_default_search_moves_alpha_beyond_the_threshold(tmp_path, one_thread):
    """Default search settings (10 epochs, the default α learning rate): every decision clearly
    made. With the thesis's 5e-5, the earlier default, every gap stayed below 0.01."""
    results, warnings = train(tiny(tmp_path, {"name": "conal"}))
    derived = results["stages"]["derive"]["derived"]
    gaps = {t: margins.margin(p)["gap"] for t, p in derived["alpha"].items()}
    assert min(gaps.values()) > margins.DEFAULT_MIN_MARGIN, gaps
    assert warnings == []
    saved = json.loads((Path(results["run_dir"]) / "stages/derive/architecture.json").read_text())
    assert saved["margins"]["task0"]["gap"] == pytest.approx(gaps["task0"])
    assert saved["min_margin"] == margins.DEFAULT_MIN_MARGIN


def test_a_flat_search_prints_one_warning_line(tmp_path, one_thread):
    results, warnings = train(tiny(tmp_path, {"name": "conal", "search": {"epochs": 2, "alpha_lr": 5.0e-5}}))
    derived = results["stages"]["derive"]["derived"]
    assert all(m["within_noise"] for m in derived["margins"].values())
    assert len(warnings) == 1
    assert "3 of 3 decisions within noise" in warnings[0] and "architecture.search.epochs" in warnings[0]


@pytest.mark.parametrize("arch", ["conal_pro", "dsmtl_al", "ltb"])
def test_every_search_architecture_records_its_margins(tmp_path, arch, one_thread):
    search = {"epochs": 2, "min_margin": 0.0} if arch != "ltb" else {"epochs": 2, "warmup": 1, "min_margin": 0.0}
    results, warnings = train(tiny(tmp_path, {"name": arch, "search": search}, arch))
    derived = results["stages"]["derive"]["derived"]
    assert derived["margins"] and derived["min_margin"] == 0.0 and warnings == []
    for m in derived["margins"].values():
        assert m["gap"] == pytest.approx(margins.margin(m["probabilities"])["gap"])
    if arch == "conal_pro":
        assert "round1 task0" in derived["margins"]


def test_min_margin_is_validated():
    reg, _ = registry.load(builtin_only=True)
    with pytest.raises(UserError, match="min_margin"):
        resolve({"domain": {"name": "synthetic_regression"}, "architecture": {"name": "conal",
                 "search": {"min_margin": -0.1}}}, reg)
