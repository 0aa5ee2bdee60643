"""The docs say what the code does."""
from pathlib import Path

import pytest

from mtl_platform.reference import MARK, PAGES

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("page", sorted(PAGES))
def test_generated_reference_pages_are_up_to_date(page):
    text = (ROOT / page).read_text()
    assert text.split(MARK, 1)[1] == PAGES[page](), f"{page} is stale: run python -m mtl_platform.reference"


def test_readme_commands_are_what_ci_runs():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert 'pip install -e ".[test]"\npython -m pytest' in ci
    assert 'pip install -e ".[test]"\npython -m pytest' in readme
    assert "mtl train configs/quickstart.yaml" in readme
