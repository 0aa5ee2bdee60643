"""`mtl list weightings` names every built-in weighting's paper in its summary line (issue 24):
a year (author year or venue year), or, for the two methods without a paper, what they are."""
import re

import pytest

from mtl_platform import registry
from mtl_platform.cli import main

REG = registry.load(builtin_only=True)[0]
YEAR = re.compile(r"\b(19|20)\d\d\b")
# weightings that are no paper's method: the phrase their summary must say instead
NO_PAPER = {"ew": "Equal weights", "fixed": "Fixed weights (no paper"}


@pytest.mark.parametrize("name", REG.names("weighting"))
def test_every_summary_names_its_paper_or_is_a_documented_exception(name):
    summary = REG.get("weighting", name).summary
    if name in NO_PAPER:
        assert summary.startswith(NO_PAPER[name]) and "no paper" in summary, summary
    else:
        assert YEAR.search(summary), f"{name}: the summary line names no year: {summary!r}"


def test_mtl_list_weightings_prints_the_cited_summaries(capsys):
    try:
        main(["list", "weightings"])
    except SystemExit as exc:
        assert exc.code in (0, None)
    lines = capsys.readouterr().out.splitlines()
    for name in REG.names("weighting"):
        at = next(i for i, line in enumerate(lines) if line.startswith(f"  {name}  [plugin "))
        assert lines[at + 1].strip() == REG.get("weighting", name).summary
        assert YEAR.search(lines[at + 1]) or name in NO_PAPER, lines[at + 1]
