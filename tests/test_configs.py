"""Every shipped config validates against the registry (nothing is trained here)."""
from pathlib import Path

import pytest

from mtl_platform.config import read_yaml, resolve

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_validate(path, builtin_registry):
    cfg = resolve(read_yaml(path), builtin_registry, name=path.stem)
    assert cfg["output"]["name"] == path.stem
