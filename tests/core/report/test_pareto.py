"""The Pareto plot of a 2- or 3-task report (issue 23, item 4): runs, their non-dominated front,
the STL point and a domain's analytic front, counted as drawn artists."""
import pytest

from mtl_platform.report import build_report, write_report
from mtl_platform.report.pareto import PARETO_PLOT, non_dominated, pareto_figure

from report_runs import fake_run

@pytest.fixture(autouse=True)
def close_figures():
    yield
    import matplotlib.pyplot as plt

    plt.close("all")


def test_non_dominated_follows_each_metrics_direction():
    points = [(1, 4), (2, 2), (3, 3), (4, 1), (2, 2)]
    assert non_dominated(points, [False, False]) == [0, 1, 3, 4]  # (3, 3) is dominated by (2, 2); ties kept
    assert non_dominated(points, [True, True]) == [0, 2, 3]


def test_two_tasks_draw_every_run_the_front_the_stl_point_and_the_known_front(tmp_path):
    known = {"metric": "value", "tasks": ["f1", "f2"], "points": [[0, 4], [1, 1], [4, 0]]}
    results = [fake_run(tmp_path, "a", 0, (1.0, 3.0), path=[(6, 6), (3, 4)], known=known),
               fake_run(tmp_path, "a", 1, (2.0, 2.5), known=known),
               fake_run(tmp_path, "b", 0, (3.0, 1.0), path=[(6, 6)], known=known),
               fake_run(tmp_path, "b", 1, (3.5, 3.5), known=known)]
    (ax,) = pareto_figure(build_report(results)).axes
    final, circled, star = ax.collections[0:2], ax.collections[2], ax.collections[3]
    assert [len(c.get_offsets()) for c in final] == [2, 2]  # each group's final points
    assert sorted(map(tuple, circled.get_offsets().tolist())) == [(1.0, 3.0), (2.0, 2.5), (3.0, 1.0)]
    assert star.get_offsets().tolist() == [[5.0, 5.0]]
    lines = {line.get_label(): line for line in ax.lines}
    assert list(lines["analytic Pareto front"].get_xdata()) == [0, 1, 4]
    trajectories = [line for line in ax.lines if line.get_alpha() == 0.35]
    assert sorted(len(line.get_xdata()) for line in trajectories) == [2, 3]  # runs with >1 epoch row
    assert all(line.get_marker() == "o" for line in trajectories)  # few points: markers
    staircase = [line for line in ax.lines if line.get_drawstyle().startswith("steps")]
    assert len(staircase) == 1 and list(staircase[0].get_xdata()) == [1.0, 2.0, 3.0]


def test_three_tasks_draw_one_panel_per_pair(tmp_path):
    tasks = ("a", "b", "c")
    results = [fake_run(tmp_path, "m", s, p, tasks=tasks, stl=(1, 1, 1))
               for s, p in enumerate([(1, 2, 3), (3, 2, 1), (3, 3, 3)])]
    fig = pareto_figure(build_report(results))
    assert [(ax.get_xlabel(), ax.get_ylabel()) for ax in fig.axes] == [
        ("a value ↓", "b value ↓"), ("a value ↓", "c value ↓"), ("b value ↓", "c value ↓")]
    for ax in fig.axes:
        assert len(ax.collections[1].get_offsets()) == 2  # (3, 3, 3) is dominated
        assert not [line for line in ax.lines if line.get_drawstyle().startswith("steps")]


def test_the_report_writes_the_pareto_plot_only_for_two_or_three_tasks(tmp_path):
    two = build_report([fake_run(tmp_path, "x", s, (s, 1.0 - s)) for s in (0, 1)])
    assert tmp_path / "out" / PARETO_PLOT in write_report(two, tmp_path / "out", ["png"])
    four = build_report([fake_run(tmp_path, "y", s, (1, 2, 3, 4), tasks=("a", "b", "c", "d"), stl=(1, 1, 1, 1))
                         for s in (0, 1)])
    assert pareto_figure(four) is None
    assert tmp_path / "out4" / PARETO_PLOT not in write_report(four, tmp_path / "out4", ["png"])
