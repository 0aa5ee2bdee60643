"""The CAGrad toy domain (issue 23, item 4): its objectives, its analytic Pareto front against a
brute-force front over a dense grid, and a run that records the front for the report."""
import math

import pytest
import torch

from mtl_platform import session
from mtl_platform_plugins.domains.pareto_toy.objectives import objectives, pareto_front, pareto_set, pareto_x2

quiet = {"progress": False, "echo": lambda *a, **k: None}


def test_objectives_at_hand_computed_points():
    # below the axis only the quadratics count: at (0, -8), c2 = tanh(4), g1 = g2 = 4.9 - 20
    f = objectives(torch.tensor([0.0, -8.0], dtype=torch.float64))
    assert f.tolist() == pytest.approx([math.tanh(4) * (4.9 - 20)] * 2, rel=1e-12)
    # above it only the log valleys: at (1, 2), c1 = tanh(1)
    h1 = math.log(abs(0.5 * (-1 - 7) - math.tanh(-2))) + 6
    h2 = math.log(abs(0.5 * (-1 + 3) - math.tanh(-2) + 2)) + 6
    f = objectives(torch.tensor([1.0, 2.0], dtype=torch.float64))
    assert f.tolist() == pytest.approx([math.tanh(1) * h1, math.tanh(1) * h2], rel=1e-12)


def test_the_pareto_set_satisfies_the_first_order_condition():
    """At each analytic point some convex combination of the two gradients vanishes (w = (x1 + 7)/14)."""
    for x1, x2 in pareto_set(21):
        x = torch.tensor([x1, x2], dtype=torch.float64, requires_grad=True)
        f = objectives(x)
        g1, = torch.autograd.grad(f[0], x, retain_graph=True)
        g2, = torch.autograd.grad(f[1], x)
        w = (x1 + 7) / 14
        assert (w * g1 + (1 - w) * g2).abs().max().item() < 1e-9
    assert pareto_x2(0.0) == pytest.approx(pareto_x2(1.0), abs=1e-12)  # symmetric in f1 <-> f2


def test_the_analytic_front_is_the_brute_force_front_of_a_dense_grid():
    """Over [-10, 10]^2 (801 x 801 points): no grid point dominates an analytic front point, and
    every non-dominated grid point lies on the analytic front (within the grid's resolution)."""
    front = torch.tensor(pareto_front(401), dtype=torch.float64)
    axis = torch.linspace(-10, 10, 801, dtype=torch.float64)
    grid = objectives(torch.stack(torch.meshgrid(axis, axis, indexing="ij"), -1).reshape(-1, 2))
    for p in front:
        assert not ((grid[:, 0] < p[0] - 1e-12) & (grid[:, 1] < p[1] - 1e-12)).any()
    ordered = grid[torch.argsort(grid[:, 0])]
    best_before = torch.cummin(ordered[:, 1], 0).values
    found = torch.cat([ordered[:1], ordered[1:][ordered[1:, 1] < best_before[:-1]]])  # the grid's non-dominated
    # distance from each to the front polyline (segments between consecutive analytic points)
    a, b = front[:-1], front[1:]
    ab = b - a
    t = (((found[:, None, :] - a[None]) * ab[None]).sum(-1) / (ab * ab).sum(-1)[None]).clamp(0, 1)
    dist = (found[:, None, :] - (a[None] + t[..., None] * ab[None])).norm(dim=-1).min(1).values
    assert len(found) > 100 and dist.max().item() < 0.02
    assert front[0].tolist() == pytest.approx([-19.989, -0.398], abs=1e-3)


def test_a_run_records_the_front_and_its_objective_values(write_config, tmp_path, one_thread):
    results = session.train(write_config(raw=None, overrides={
        "domain": {"name": "pareto_toy", "init": [-8.5, -5.0], "steps": 20, "batch_size": 1, "eval_batch_size": 1},
        "optimizer": {"name": "adam", "lr": 0.01}, "train.epochs": 1}), **quiet)
    known = results["known_front"]
    assert known["tasks"] == ["f1", "f2"] and known["metric"] == "shifted" and len(known["points"]) == 101
    f1 = results["test"]["f1"]
    assert f1["shifted"] == pytest.approx(f1["value"] + 20, abs=1e-12)
    start = objectives(torch.tensor([-8.5, -5.0], dtype=torch.float64))[0].item()
    assert f1["value"] < start  # 20 steps of EW improve f1 from the start


@pytest.fixture(scope="module")
def ends_on_the_front(tmp_path_factory):
    """Where 300 Adam steps (lr 0.05) of each weighting end from (-8.5, -5), and how far from the front."""
    import yaml

    front = torch.tensor(pareto_front(4001), dtype=torch.float64)
    tmp = tmp_path_factory.mktemp("toy")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    ends = {}
    for weighting in ("ew", "mgda", "nash_mtl"):
        cfg = {"domain": {"name": "pareto_toy", "init": [-8.5, -5.0], "steps": 300, "batch_size": 1,
                          "eval_batch_size": 1},
               "architecture": "hps", "weighting": weighting, "optimizer": {"name": "adam", "lr": 0.05},
               "train": {"epochs": 1, "seed": 0, "device": "cpu", "progress": False, "log_every": 300},
               "output": {"root": str(tmp / "runs")}}
        (tmp / f"{weighting}.yaml").write_text(yaml.safe_dump(cfg))
        test = session.train(tmp / f"{weighting}.yaml", **quiet)["test"]
        point = torch.tensor([test["f1"]["value"], test["f2"]["value"]], dtype=torch.float64)
        ends[weighting] = (point, (front - point).norm(dim=1).min().item())
    torch.set_num_threads(before)
    return ends


def test_weightings_end_on_the_analytic_front_at_different_places(ends_on_the_front):
    for weighting, (point, distance) in ends_on_the_front.items():
        assert distance < 0.01, (weighting, point.tolist(), distance)
    # MGDA (the min-norm point) ends next to f2's optimum, EW in the middle of the front
    assert ends_on_the_front["mgda"][0][1] < -19.9 and -16 < ends_on_the_front["ew"][0][1] < -15
