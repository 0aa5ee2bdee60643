"""The docs say what the code does."""
from pathlib import Path

from mtl_platform.config import reference_markdown

ROOT = Path(__file__).resolve().parents[1]


def test_config_reference_is_generated_from_the_declared_parameters():
    text = (ROOT / "docs" / "config.md").read_text()
    assert text.split("<!-- generated -->\n", 1)[1] == reference_markdown(), \
        "docs/config.md is stale: run python -m mtl_platform.config docs/config.md"


def test_readme_commands_are_what_ci_runs():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert 'pip install -e ".[test]"\npython -m pytest' in ci
    assert 'pip install -e ".[test]"\npython -m pytest' in readme
    assert "mtl train configs/quickstart.yaml" in readme
