"""The report's figures are readable whatever the run's length (issue 23, item 5): each test counts
what was drawn (matplotlib artists), not that a file was written."""
import json

import pytest

from mtl_platform import runs
from mtl_platform.report import build_report
from mtl_platform.report.plots import FEW_POINTS, delta_figure, training_figure

SPEC = {t: {"accuracy": {"higher_is_better": True, "in_delta_p": True}} for t in ("left", "right")}
STL_ACC = {0: (0.80, 0.50), 1: (0.50, 0.80), 2: (0.40, 0.40)}
A_ACC = {0: (0.84, 0.50), 1: (0.50, 0.84), 2: (0.42, 0.38)}


def _result(group, label, seed, acc, stl_acc):
    """A run's results.json as the trainer writes it (the fields the report reads)."""
    def scores(a):
        return {"left": {"accuracy": a[0]}, "right": {"accuracy": a[1]}}

    return {"run_dir": f"runs/{label}_{seed}", "config_name": "quickstart", "group": group, "label": label,
            "seed": seed, "select": "last", "epoch": 9, "spec": SPEC, "mtl": scores(acc), "stl": scores(stl_acc)}


def visible_points(line) -> int:
    """Points of a Line2D the eye can see: with a line style it needs 2 points, with a marker 1."""
    xs = list(line.get_xdata())
    has_marker = line.get_marker() not in (None, "None", "", " ")
    has_line = line.get_linestyle() not in ("None", "", " ") and len(xs) >= 2
    return len(xs) if has_marker or has_line else 0


def diagnostics_run(tmp_path, name: str, steps: list[int], weights: bool = True):
    run_dir = tmp_path / name
    run_dir.mkdir()
    rows = [dict({"step": s, "conflict": 0.5, "norm": {"left": 1.0, "right": 2.0}, "cos": {"left|right": -0.1},
                  "stage": "main"}, **({"weights": {"left": 1.0, "right": 1.5}} if weights else {}))
            for s in steps]
    (run_dir / runs.DIAGNOSTICS_FILE).write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = _result("g", "hps + ew", 0, A_ACC[0], STL_ACC[0])
    result["run_dir"] = str(run_dir)
    return result


@pytest.fixture(autouse=True)
def close_figures():
    yield
    import matplotlib.pyplot as plt

    plt.close("all")


@pytest.mark.parametrize("n", [1, 3, FEW_POINTS + 20])
def test_every_training_curve_shows_its_points_and_few_points_get_markers(tmp_path, n):
    fig = training_figure(build_report([diagnostics_run(tmp_path, "r", list(range(50, 50 * (n + 1), 50)))]))
    ax_w, ax_c, ax_cos = fig.axes
    assert [len(ax.lines) for ax in (ax_w, ax_c, ax_cos)] == [2, 1, 2]  # 2 weights; conflict; cos + zero line
    curves = ax_w.lines + ax_c.lines + ax_cos.lines[:1]
    for line in curves:
        assert visible_points(line) == n, (line.get_label(), n)
        assert (line.get_marker() == "o") == (n <= FEW_POINTS)


def test_a_weighting_without_task_weights_leaves_a_note_not_an_empty_axis(tmp_path):
    fig = training_figure(build_report([diagnostics_run(tmp_path, "r", [50], weights=False)]))
    ax_w = fig.axes[0]
    assert not ax_w.lines and any("no task weights" in t.get_text() for t in ax_w.texts)


def test_no_diagnostics_no_training_figure(tmp_path):
    result = _result("g", "hps + ew", 0, A_ACC[0], STL_ACC[0])
    result["run_dir"] = str(tmp_path)
    assert training_figure(build_report([result])) is None


def test_one_seed_draws_bars_without_error_bars_and_several_seeds_with(tmp_path):
    one = build_report([_result("g", "hps + ew", 0, A_ACC[0], STL_ACC[0])])
    (ax,) = delta_figure(one).axes
    assert len(ax.patches) == 2  # one bar per task
    assert not [c for c in ax.containers if type(c).__name__ == "ErrorbarContainer"]
    assert not ax.collections  # no error-bar line collection either
    several = build_report([_result("g", "hps + ew", s, A_ACC[s], STL_ACC[s]) for s in (0, 1, 2)])
    (ax,) = delta_figure(several).axes
    assert len(ax.patches) == 2
    (errorbars,) = [c for c in ax.containers if type(c).__name__ == "ErrorbarContainer"]
    assert len(errorbars.lines[2][0].get_segments()) == 2  # one ± std segment per task
