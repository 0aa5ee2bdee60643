"""A real training run on the procedural scenes: HPS + EW beats the constant predictor on
every Δp metric of every task by a clear margin; the full quickstart (slow) prints Δp and η."""
from pathlib import Path

import json

import pytest
import yaml
from click.testing import CliRunner

from mtl_platform import registry as registry_mod
from mtl_platform import session
from mtl_platform.cli import cli
from mtl_platform.config import apply_overrides, resolve
from mtl_platform.experiment import build_domain
from mtl_platform_plugins.domains.dense.constant import ConstantPredictor

ROOT = Path(__file__).resolve().parents[4]
QUICKSTART = ROOT / "configs" / "scenes_quickstart.yaml"
quiet = {"progress": False, "echo": lambda *a, **k: None}


def scenes_domain(sets):
    """The quickstart's domain with ``--set`` style overrides, built in-process."""
    reg, _ = registry_mod.load(builtin_only=True)
    raw, _ = apply_overrides(yaml.safe_load(QUICKSTART.read_text()), sets)
    return build_domain(resolve(raw, reg), reg)


def constant_scores(sets):
    domain = scenes_domain(sets)
    return domain.evaluate(ConstantPredictor(domain), "test"), domain.spec()


def clearly_better(mtl, const, higher):
    """Better than the constant by a clear margin: 20 % of the way from it to perfect
    (1 for fractions, 0 for errors) — far beyond seed noise on these metrics."""
    return mtl >= const + 0.2 * (1 - const) if higher else mtl <= 0.8 * const


def assert_beats_constant(results_test, constant, spec):
    for task, metrics in spec.items():
        for metric, how in metrics.items():
            if how["in_delta_p"]:
                mtl, const = results_test[task][metric], constant[task][metric]
                assert clearly_better(mtl, const, how["higher_is_better"]), (task, metric, mtl, const)


def test_constant_predictor_is_the_hand_computed_floor(one_thread):
    sets = ["domain.data.train_images=60", "domain.data.val_images=10", "domain.data.test_images=20"]
    domain = scenes_domain(sets)
    model = ConstantPredictor(domain)
    constant = domain.evaluate(model, "test")
    # the majority class everywhere: pixel accuracy is that class's share of the test pixels
    majority = int(model.values["segmentation"].argmax())
    test = domain.dataset("test")
    seg = test.targets["segmentation"]
    assert constant["segmentation"]["pixel_accuracy"] == pytest.approx((seg == majority).double().mean().item())
    depth = test.targets["depth"]
    assert constant["depth"]["abs_err"] == pytest.approx(
        (depth - model.values["depth"]).abs().mean().item(), rel=1e-5)  # every scenes pixel has depth


def test_hps_on_scenes_beats_the_constant_predictor_on_every_metric(tmp_path, one_thread):
    sets = ["train.epochs=3", "baselines.stl=false", "train.device=cpu", f"output.root={tmp_path}"]
    results = session.train(QUICKSTART, sets=sets, **quiet)
    constant, spec = constant_scores(sets)
    assert set(spec) == {"segmentation", "depth", "normal"}
    assert_beats_constant(results["test"], constant, spec)


@pytest.mark.slow
def test_scenes_quickstart_prints_delta_p_and_eta_and_beats_the_constant(tmp_path):
    result = CliRunner().invoke(cli, ["train", str(QUICKSTART), "--set", f"output.root={tmp_path / 'runs'}",
                                      "--set", "train.progress=false"])
    assert result.exit_code == 0, result.output
    assert "Δp = " in result.output and "η = " in result.output
    for task in ("segmentation", "depth", "normal"):
        assert f"\n{task} " in result.output
    run = next((tmp_path / "runs").iterdir())
    results = json.loads((run / "results.json").read_text())
    constant, spec = constant_scores([])
    assert_beats_constant(results["test"], constant, spec)


def test_a_segnet_image_size_not_divisible_by_32_is_one_line_and_exit_2(tmp_path, capsys):
    from conftest import assert_one_line_error
    from test_cli import run_cli

    code, out, err = run_cli(["train", str(QUICKSTART), "--no-progress", "--set", "domain.data.image_size=[40,64]",
                              "--set", f"output.root={tmp_path / 'runs'}"], capsys)
    assert_one_line_error(code, out, err, r"domain\.data\.image_size: \[40, 64\].*segnet.*divisible by 32")
    assert not (tmp_path / "runs").exists()
