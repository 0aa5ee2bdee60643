"""Closure methods in whole runs (DESIGN.md §3.5): bad combinations are one line, exit 2 and no
run directory; a run with a closure resumes bit for bit; the quickstart trains with SAM; a null
closure leaves run hashes as they were; `mtl list closures`."""
import re
from pathlib import Path

import pytest
import torch
import yaml

from mtl_platform import registry, session
from mtl_platform.checkpoint import load
from mtl_platform.cli import main
from mtl_platform.config import config_hash, resolve
from mtl_platform.errors import UserError
from mtl_platform.hookspecs import hookimpl
from mtl_platform_plugins.domains.multi_mnist.domain import MultiMNIST

from conftest import run_dirs
from test_trainer import InterruptAt, metrics_of, quiet

ROOT = Path(__file__).resolve().parents[2]
SYNTHETIC = {"domain": {"name": "synthetic_regression", "train_samples": 64, "val_samples": 32, "test_samples": 32,
                        "hidden": [8, 8], "batch_size": 16},
             "train": {"epochs": 1, "device": "cpu", "progress": False}}


def run_cli(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


BAD = {
    "pga with three tasks": ({"closure": "pga"}, r"closure: pga takes exactly two objectives; domain "
                             r"'synthetic_regression' has 3 loss terms \(task0, task1, task2\); use mpga"),
    "radius below zero": ({"closure": {"name": "pga", "radius": -0.1}, "domain.tasks": ["task0", "task1"]},
                          r"closure\.radius: got -0\.1"),
    "pga with pcgrad": ({"closure": "pga", "weighting": "pcgrad", "domain.tasks": ["task0", "task1"]},
                        r"closure: pga combines the task gradients with its own coefficients .* got weighting "
                        r"'pcgrad'"),
    "unknown closure": ({"closure": "sma"}, r"closure\.name: unknown closure 'sma' \(did you mean 'sam'\?\)"),
    "closure with accumulation": ({"closure": "sam", "train.accumulate": 2},
                                  r"train\.accumulate: got 2; closure 'sam' .* cannot accumulate"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_combinations_are_one_line_exit_2_and_no_run_directory(case, tmp_path, capsys):
    changes, pattern = BAD[case]
    cfg = yaml.safe_load(yaml.safe_dump(SYNTHETIC))
    cfg["output"] = {"root": str(tmp_path / "runs")}
    for key, value in changes.items():
        section, _, sub = key.partition(".")
        if sub:
            cfg[section][sub] = value
        else:
            cfg[section] = value
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(cfg))
    code, _, err = run_cli(["train", str(path), "--no-progress"], capsys)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and re.search(pattern, err), err
    assert not (tmp_path / "runs").exists()


class StepsTwice(MultiMNIST):
    """A domain whose update protocol is its own (two steps per batch)."""

    name = "steps_twice"

    def train_step(self, batch, model, engine, optimizers):
        raise AssertionError("never reached: the closure is refused first")


class DomainPlugin:
    __name__ = "steps_twice_plugin"

    @hookimpl
    def mtl_register(self, registry):
        registry.add_domain(StepsTwice)


def test_a_domain_with_its_own_protocol_refuses_a_closure_before_a_run_directory(write_config, tmp_path):
    cfg = write_config({"domain.name": "steps_twice", "closure": "sam"})
    with pytest.raises(UserError, match=r"^closure: domain 'steps_twice' has its own update protocol, which "
                                        r"takes no closure method"):
        session.train(cfg, extra_plugins=[DomainPlugin()], **quiet)
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("closure, interrupt_step", [({"name": "sam", "rho": 0.1}, 9),
                                                     ({"name": "pga", "radius": 0.01, "align": 0.1}, 6)])
def test_a_run_with_a_closure_resumes_bit_for_bit(write_config, tmp_path, closure, interrupt_step, one_thread):
    cfg = write_config({"train.epochs": 3, "train.checkpoint_every": 3, "closure": closure,
                        "domain.dropout": 0.5})  # dropout: the closure's replayed draws must survive a resume
    full = session.train(cfg, **quiet)
    (full_dir,) = run_dirs(tmp_path / "runs")
    with pytest.raises(KeyboardInterrupt):
        session.train(cfg, extra_plugins=[InterruptAt(interrupt_step)], **quiet)
    cut_dir = next(d for d in run_dirs(tmp_path / "runs") if d != full_dir)
    assert load(cut_dir / "checkpoint.pt")["step"] == interrupt_step
    resumed = session.train(resume=cut_dir, **quiet)
    assert resumed["mtl"] == full["mtl"]
    assert metrics_of(cut_dir) == metrics_of(full_dir)
    a, b = load(full_dir / "model.pt"), load(cut_dir / "model.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert full["label"].endswith(f"+ {closure['name']}")


def test_the_closure_changes_the_run(write_config, tmp_path, one_thread):
    plain = session.train(write_config({"train.epochs": 1}), **quiet)
    sam = session.train(write_config({"train.epochs": 1, "closure": {"name": "sam", "rho": 0.5}}, name="sam"), **quiet)
    assert plain["mtl"] != sam["mtl"]
    assert plain["group"] != sam["group"]


def test_a_null_closure_leaves_the_config_hash_as_before(builtin_registry):
    raw = {"domain": "multi_mnist"}
    config = resolve(raw, builtin_registry)
    assert config["closure"] is None
    without = {k: v for k, v in config.items() if k != "closure"}
    assert config_hash(config, registry=builtin_registry) == config_hash(without, registry=builtin_registry)
    with_sam = resolve(dict(raw, closure="sam"), builtin_registry)
    assert with_sam["closure"] == {"name": "sam", "rho": 0.05, "adaptive": False, "eta": 0.01}
    assert config_hash(with_sam, registry=builtin_registry) != config_hash(config, registry=builtin_registry)


def test_the_quickstart_trains_with_sam_from_the_command_line(tmp_path, capsys, one_thread):
    code = None
    try:
        main(["train", str(ROOT / "configs" / "quickstart.yaml"), "--set", "closure={name: sam, rho: 0.05}",
              "--set", "domain.train_pairs=128", "--set", "domain.val_pairs=64", "--set", "domain.test_pairs=64",
              "--set", "train.epochs=1", "--set", "baselines.stl=false", "--set", "train.device=cpu",
              "--set", f"output.root={tmp_path / 'runs'}", "--no-progress"])
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    assert code in (None, 0), err
    (run_dir,) = run_dirs(tmp_path / "runs")
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["closure"] == {"name": "sam", "rho": 0.05, "adaptive": False, "eta": 0.01}
    assert (run_dir / "results.json").exists()


def test_mtl_list_closures_shows_the_builtins(capsys):
    main(["list", "closures"])
    out = capsys.readouterr().out
    for name in ("sam", "pga", "mpga"):
        assert re.search(rf"^  {name}  \[plugin mtl_platform\.closures", out, re.M)
    assert registry.CORE_KINDS[-1] == "closure"
