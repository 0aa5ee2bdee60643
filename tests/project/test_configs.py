"""Every shipped config validates against the registry; the synthetic study configs also train."""
from pathlib import Path

import pytest
import yaml

from mtl_platform import registry, session
from mtl_platform.config import read_yaml, resolve

ROOT = Path(__file__).resolve().parents[2] / "configs"
CONFIGS = sorted(ROOT.glob("*.yaml")) + sorted((ROOT / "synthetic").glob("*.yaml"))
SYNTHETIC = sorted((ROOT / "synthetic").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_validate(path, builtin_registry):
    cfg = resolve(read_yaml(path), builtin_registry, name=path.stem)
    assert cfg["output"]["name"] == path.stem


@pytest.mark.parametrize("path", SYNTHETIC, ids=lambda p: p.name)
def test_synthetic_study_configs_train(tmp_path, path, one_thread):
    """One epoch of each stage, no baselines, at most 256 training samples; the rest as shipped."""
    raw = read_yaml(path)
    raw["domain"]["train_samples"] = min(raw["domain"]["train_samples"], 256)
    raw["train"].update(epochs=1, device="cpu", progress=False)
    raw["baselines"] = {"stl": False}
    raw["output"] = {"root": str(tmp_path / "runs")}
    if isinstance(raw["architecture"], dict) and "search" in raw["architecture"]:
        raw["architecture"]["search"]["epochs"] = 1
    config = tmp_path / path.name
    config.write_text(yaml.safe_dump(raw))
    results = session.train(config, progress=False, echo=lambda *a, **k: None)
    assert set(results["mtl"]) == {"task0", "task1", "task2"}
    assert all(v["mse"] > 0 for v in results["mtl"].values())
