"""A third-party plugin loaded through its entry-point metadata (DESIGN.md §4).

``examples/mtl-plugin-example`` is an ordinary pip-installable distribution. The fast tests
lay it out on ``sys.path`` exactly as pip would — the package plus a ``*.dist-info`` folder
with ``METADATA`` and ``entry_points.txt`` — without running pip; the slow test runs pip.
"""
from __future__ import annotations

import configparser
import importlib
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from mtl_platform import registry, runs, session
from mtl_platform.batches import to_device
from mtl_platform.checkpoint import load, seed_everything
from mtl_platform.experiment import build_experiment

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "mtl-plugin-example"
GUIDE = ROOT / "docs" / "writing-a-plugin.md"
MODULE = "mtl_plugin_example"
DIST, VERSION = "mtl-plugin-example", "0.1.0"
ENTRY_POINTS = f"[mtl_platform]\n{MODULE} = {MODULE}\n"


def declared_entry_points() -> dict | None:
    """The example's ``[project.entry-points]`` tables, read from its pyproject (Python >= 3.11)."""
    try:
        import tomllib
    except ImportError:  # Python 3.10: the slow pip test still checks what pip writes
        return None
    project = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())["project"]
    assert project["name"] == DIST and project["version"] == VERSION
    return project["entry-points"]


def forget_example_modules() -> None:
    for name in [m for m in sys.modules if m == MODULE or m.startswith(MODULE + ".")]:
        del sys.modules[name]


def lay_out_like_pip(site: Path) -> None:
    """The package and its ``dist-info`` (METADATA, entry_points.txt), as pip writes them."""
    shutil.copytree(EXAMPLE / MODULE, site / MODULE, ignore=shutil.ignore_patterns("__pycache__"))
    info = site / f"{MODULE}-{VERSION}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {DIST}\nVersion: {VERSION}\n")
    (info / "entry_points.txt").write_text(ENTRY_POINTS)


@pytest.fixture
def example_site(tmp_path, monkeypatch):
    """A folder on ``sys.path`` holding the example as if pip had installed it there."""
    declared = declared_entry_points()
    assert declared in (None, {"mtl_platform": {MODULE: MODULE}}), \
        "the example must expose exactly one entry point, the one written below"
    site = tmp_path / "site"
    site.mkdir()
    lay_out_like_pip(site)
    forget_example_modules()
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()  # the import system and importlib.metadata see the new folder
    yield site
    forget_example_modules()
    importlib.invalidate_caches()


def subprocess_env(*front: Path) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(p) for p in front] + [p for p in sys.path if p])
    return env


def test_the_registry_finds_the_example_through_its_entry_point(example_site):
    reg, pm = registry.load()
    comp = reg.get("weighting", "initial_loss")
    assert comp.plugin == MODULE
    assert comp.module == f"{MODULE}.initial_loss"
    assert Path(sys.modules[comp.module].__file__).is_relative_to(example_site)
    (eps,) = comp.params
    assert (eps.name, eps.type, eps.default) == ("eps", float, 1e-8)
    assert pm.has_plugin(MODULE)
    ep = next(ep for ep in importlib.metadata.entry_points(group=registry.ENTRY_POINT_GROUP) if ep.name == MODULE)
    assert (ep.value, ep.dist.name, ep.dist.version) == (MODULE, DIST, VERSION)
    # the built-ins are still there, next to it
    assert {"ew", "uw", "dwa", "initial_loss"} <= set(reg.names("weighting"))


def test_training_from_yaml_weights_tasks_by_their_first_losses(example_site, write_config):
    path = write_config({"weighting": {"name": "initial_loss"}})
    results = session.train(path, progress=False, echo=lambda *a, **k: None)
    run_dir = Path(results["run_dir"])
    rows = runs.read_jsonl(run_dir / runs.METRICS_FILE)
    assert [r["epoch"] for r in rows] == [0, 1]

    # L(0), independently: the same experiment, seeded as Trainer.fit seeds it, first training batch.
    config, reg, _, _ = session.prepare(path, progress=False)
    exp = build_experiment(config, reg)
    seed_everything(config["train"]["seed"], config["train"]["deterministic"])
    exp.model.train()
    batch = to_device(next(iter(exp.domain.loaders("train", 0))), exp.device)
    with torch.no_grad():
        first = exp.domain.losses(batch, exp.model)
    tasks = exp.domain.task_names
    expected = {t: 1.0 / float(first[t]) for t in tasks}

    for row in rows:
        weights = row["weights"]
        assert set(weights) == set(tasks)
        assert all(w > 0 for w in weights.values())
        assert weights == pytest.approx(expected, rel=1e-6)
    assert rows[0]["weights"] == rows[1]["weights"]  # fixed after the first step
    assert any(abs(w - 1.0) > 1e-3 for w in rows[0]["weights"].values())  # not equal weighting

    # the first losses are state: checkpointed with the weighting's state_dict
    state = load(run_dir / runs.CHECKPOINT_FILE)["weighting"]
    assert bool(state["seen"])
    assert state["initial"].tolist() == pytest.approx([float(first[t]) for t in tasks], rel=1e-6)


def test_the_example_logger_writes_the_newest_scalars(example_site, write_config):
    """A third-party logger, selected in YAML like the built-ins (issue 23): latest.json holds the
    last epoch's row and the last diagnostics."""
    import json

    assert registry.load()[0].get("logger", "latest_json").plugin == MODULE
    path = write_config({"loggers": ["latest_json"], "gradients": {"diagnostics_every": 2}})
    run_dir = Path(session.train(path, progress=False, echo=lambda *a, **k: None)["run_dir"])
    latest = json.loads((run_dir / "latest.json").read_text())
    last = runs.read_jsonl(run_dir / runs.METRICS_FILE)[-1]
    assert latest["test/left/accuracy"] == {"step": last["step"], "value": last["test"]["left"]["accuracy"]}
    diagnostics = runs.read_jsonl(run_dir / runs.DIAGNOSTICS_FILE)[-1]
    assert latest["diagnostics/conflict"] == {"step": diagnostics["step"], "value": diagnostics["conflict"]}


def test_mtl_list_shows_the_example_and_its_plugin(example_site):
    proc = subprocess.run([sys.executable, "-m", "mtl_platform.cli", "list", "weightings"],
                          capture_output=True, text=True, env=subprocess_env(example_site), timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert f"initial_loss  [plugin {MODULE}: {MODULE}.initial_loss]" in proc.stdout
    assert "eps: finite float >= 0 = 1e-08" in proc.stdout
    assert "ew  [plugin mtl_platform.weightings" in proc.stdout


def test_the_guide_quotes_the_example_verbatim():
    """Every code block of docs/writing-a-plugin.md marked ``<!-- example: PATH -->`` is in PATH."""
    blocks = re.findall(r"<!-- example: (\S+) -->\n```\w*\n(.*?)```", GUIDE.read_text(), flags=re.S)
    assert {path for path, _ in blocks} >= {"pyproject.toml", f"{MODULE}/__init__.py", f"{MODULE}/initial_loss.py"}
    for path, code in blocks:
        assert code in (EXAMPLE / path).read_text(), f"{GUIDE.name}: the block marked {path} is not in that file"


@pytest.mark.slow
def test_pip_installs_the_example_and_the_registry_finds_it(tmp_path):
    source = tmp_path / "src"  # build from a copy: pip's in-tree build leaves build/ and *.egg-info behind
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("__pycache__", "build", "*.egg-info"))
    target = tmp_path / "target"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation",
                    "--no-index", "--disable-pip-version-check", "--quiet", "--target", str(target),
                    str(source)], check=True, timeout=300)

    # pip wrote what the fast tests write by hand
    info = target / f"{MODULE}-{VERSION}.dist-info"
    written = configparser.ConfigParser()
    written.read_string((info / "entry_points.txt").read_text())
    assert {s: dict(written[s]) for s in written.sections()} == {"mtl_platform": {MODULE: MODULE}}

    script = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        from mtl_platform import registry
        reg, pm = registry.load()
        comp = reg.get("weighting", "initial_loss")
        assert comp.plugin == {MODULE!r}, comp.plugin
        assert Path(sys.modules[comp.module].__file__).is_relative_to({str(target)!r})
        (eps,) = comp.params
        assert (eps.name, eps.type, eps.default) == ("eps", float, 1e-8)
        print("ok", comp.plugin, comp.module)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=subprocess_env(target), cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"ok {MODULE} {MODULE}.initial_loss"
