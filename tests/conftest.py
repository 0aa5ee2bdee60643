"""Shared fixtures: an isolated STL cache, tiny MultiMNIST configs, hook recorders."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from mtl_platform.hookspecs import hookimpl

TINY = {
    "domain": {"name": "multi_mnist", "batch_size": 32, "train_pairs": 192, "val_pairs": 64,
               "test_pairs": 64, "eval_batch_size": 64},
    "architecture": "hps",
    "weighting": "ew",
    "optimizer": {"name": "adam", "lr": 1.0e-3},
    "train": {"epochs": 2, "seed": 0, "device": "cpu", "progress": False, "log_every": 2},
}


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors: torch's intra-op threads only add contention (10-100x slower on a busy host)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def builtin_registry():
    """The built-in components alone (``registry.load(builtin_only=True)``), whatever
    third-party plugins are installed: for tests about the exact set of components."""
    from mtl_platform import registry

    return registry.load(builtin_only=True)[0]


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("MTL_CACHE", str(cache))
    return cache


@pytest.fixture
def write_config(tmp_path):
    """Write a config (TINY merged with overrides) and return its path; runs go to tmp/runs."""

    def write(overrides: dict | None = None, name: str = "tiny", raw: str | None = None) -> Path:
        path = tmp_path / f"{name}.yaml"
        if raw is not None:
            path.write_text(raw)
            return path
        cfg = json.loads(json.dumps(TINY))
        cfg["output"] = {"root": str(tmp_path / "runs")}
        for key, value in (overrides or {}).items():
            section, _, sub = key.partition(".")
            if sub:
                node = cfg.setdefault(section, {})
                if isinstance(node, str):
                    node = cfg[section] = {"name": node}
                node[sub] = value
            else:
                cfg[section] = value
        path.write_text(yaml.safe_dump(cfg))
        return path

    return write


# weightings whose parameters have no default: what tests that build every weighting give them
REQUIRED_WEIGHTING_ARGS = {"fixed": lambda tasks: {"weights": {t: 0.5 + i for i, t in enumerate(tasks)}}}


def weighting_args(name: str, tasks: list[str]) -> dict:
    return REQUIRED_WEIGHTING_ARGS.get(name, lambda t: {})(list(tasks))


def config_writer(base: dict, path: Path, root: Path):
    """``write(**changes)``: ``base`` with dotted-key changes (``search.epochs=3``) written to
    ``path`` as YAML, runs under ``root``; returns the path."""

    def write(**changes) -> Path:
        cfg = json.loads(json.dumps(base))
        cfg["output"] = {"root": str(root)}
        for key, value in changes.items():
            node = cfg
            *parents, last = key.split(".")
            for part in parents:
                node = node.setdefault(part, {})
            node[last] = value
        path.write_text(yaml.safe_dump(cfg))
        return path

    return write


class Recorder:
    """An in-process plugin that records training-loop hook calls."""

    __name__ = "recorder"

    def __init__(self):
        self.starts: list[str] = []
        self.checkpoints: list[tuple[str, int]] = []
        self.epochs: list[tuple[str, int]] = []

    @hookimpl
    def mtl_run_start(self, run):
        self.starts.append(run.stage)

    @hookimpl
    def mtl_checkpoint(self, run, path):
        self.checkpoints.append((run.stage, run.step))

    @hookimpl
    def mtl_epoch_end(self, run, epoch):
        self.epochs.append((run.stage, epoch))


@pytest.fixture
def recorder():
    return Recorder()


def assert_one_line_error(code, stdout: str, err: str, pattern: str = "") -> str:
    """A refused command: exit 2, one ``mtl: error: …`` line on stderr matching ``pattern``, no
    traceback. Returns the line."""
    import re

    assert code == 2, stdout + err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mtl: error: "), err
    assert re.search(pattern, lines[0]), lines[0]
    assert "Traceback" not in stdout + err
    return lines[0]


def assert_train_refuses(config: dict, sets, tmp_path, capsys, pattern: str) -> str:
    """``mtl train`` of ``config`` with the ``--set`` style ``sets`` (output under tmp_path/runs) is
    refused in one line matching ``pattern``, exit 2, and writes no run folder. Returns the line."""
    from mtl_platform.config import apply_overrides
    from test_cli import run_cli

    raw, _ = apply_overrides(config, [f"output.root={tmp_path / 'runs'}", *sets])
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True))
    code, out, err = run_cli(["train", str(path), "--no-progress"], capsys)
    line = assert_one_line_error(code, out, err, pattern)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
    return line


class InterruptAt:
    """Simulates Ctrl-C right after the checkpoint of ``step`` (in ``stage``, any stage if None)."""

    __name__ = "interrupt"

    def __init__(self, step, stage=None):
        self.step, self.stage = step, stage

    @hookimpl
    def mtl_checkpoint(self, run):
        if run.step == self.step and self.stage in (None, run.stage):
            raise KeyboardInterrupt


def make_domain(cls, **overrides):
    """A domain built in-process with its declared defaults, some overridden."""
    params = {p.name: p.default for p in cls.declared_params()}
    params.update(overrides)
    return cls(seed=0, **params)


def run_dirs(root: Path) -> list[Path]:
    return sorted(p for p in Path(root).iterdir()) if Path(root).exists() else []
