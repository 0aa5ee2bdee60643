"""MPGA (spec gradients.md §3.4) through the real seam: the star graph on a 3-source quadratic
against a hand computation, the all-pairs graph on 3 tasks, two tasks = PGA, what it refuses."""
import pytest
import torch

from mtl_platform.errors import UserError
from mtl_platform_plugins.closures.mpga import MPGA, neighbourhoods
from mtl_platform_plugins.closures.pga import PGA
from mtl_platform_plugins.weightings.ew import EW
from mtl_platform_plugins.weightings.mgda import MGDA

from closure_cases import Quadratics, RecordingSGD, closure_of, engine_of

# a target T and three sources; θ = (1, 1); g_T = (1, 1), g_S1 = (1, 2), g_S2 = (1.5, 0.5), g_S3 = (0.5, 3)
A = {"T": [[2.0, 0.0], [0.0, 1.0]], "S1": [[1.0, 0.0], [0.0, 3.0]], "S2": [[2.0, 0.5], [0.5, 1.0]],
     "S3": [[0.5, 0.0], [0.0, 2.0]]}
B = {"T": [1.0, 0.0], "S1": [0.0, 1.0], "S2": [1.0, 1.0], "S3": [0.0, -1.0]}


class FakeDomain:
    def __init__(self, tasks):
        self.task_names = list(tasks)
        self.name = "fake"


def run(method, tasks, A=A, B=B, theta=(1.0, 1.0)):
    model = Quadratics(tasks, list(theta), {t: A[t] for t in tasks}, {t: B[t] for t in tasks})
    method.check(FakeDomain(tasks), EW(tasks))
    opt = RecordingSGD(model.parameters(), lr=1.0)
    out = method.step(closure_of(model), engine_of(model), [opt])
    return model, opt, out


def test_star_on_three_sources_equals_the_hand_computation():
    # ρ_gn = 0.1, ρ_ga = 0.5, λ = 0.5. The target's point: θ + 0.1 ĝ_T − 0.5 Σ_i g_Si/(‖g_Si‖‖g_T‖);
    # each source's: θ + 0.1 ĝ_Si − 0.5 g_T/(‖g_T‖‖g_Si‖); final g̃_T + 0.5 Σ_i g̃_Si (numbers worked
    # out separately with numpy from these formulas).
    model, opt, out = run(MPGA(radius=0.1, align=0.5, tradeoff=0.5), ["T", "S1", "S2", "S3"])
    points = [[0.51906278, 0.2939366], [0.88660748, 0.93132884], [0.87126153, 0.80801598],
              [0.90019226, 0.98239175]]
    grads = [[0.03812556, 0.2939366], [0.88660748, 1.79398651], [1.14653105, 0.24364674],
             [0.45009613, 2.96478351]]
    for k in range(4):
        assert torch.allclose(model.seen[1 + k], torch.tensor(points[k], dtype=torch.float64), atol=1e-7)
        assert torch.allclose(model.grads[4 + k], torch.tensor(grads[k], dtype=torch.float64), atol=1e-7)
    assert torch.allclose(opt.seen_grads[0], torch.tensor([1.27974289, 2.79514498], dtype=torch.float64), atol=1e-7)
    assert out.weights.tolist() == [1.0, 0.5, 0.5, 0.5]


def test_all_pairs_on_three_tasks():
    tasks = ["T", "S1", "S2"]
    model, opt, _ = run(MPGA(radius=0.1, align=0.5, tradeoff=1.0, neighbourhood="all"), tasks)
    theta = torch.tensor([1.0, 1.0], dtype=torch.float64)
    Am = {t: torch.tensor(A[t], dtype=torch.float64) for t in tasks}
    g = {t: Am[t] @ theta - torch.tensor(B[t], dtype=torch.float64) for t in tasks}
    final = 0
    for k, t in enumerate(tasks):
        d = 0.1 * g[t] / g[t].norm()
        for o in tasks:
            if o != t:
                d = d - 0.5 * g[o] / (g[o].norm() * g[t].norm())
        assert torch.allclose(model.seen[1 + k], theta + d, atol=1e-12)
        final = final + g[t] + Am[t] @ d
    assert torch.allclose(opt.seen_grads[0], final, atol=1e-12)
    star, star_opt, _ = run(MPGA(radius=0.1, align=0.5, tradeoff=1.0, neighbourhood="star"), tasks)
    assert not torch.allclose(star_opt.seen_grads[0], final)  # S1 and S2 are aligned with each other only here


@pytest.mark.parametrize("neighbourhood", ["star", "all"])
def test_two_tasks_are_pga(neighbourhood):
    tasks = ["T", "S1"]
    _, mpga, _ = run(MPGA(radius=0.1, align=0.5, tradeoff=0.5, neighbourhood=neighbourhood), tasks)
    _, pga, _ = run(PGA(radius=0.1, align=0.5, tradeoff=0.5), tasks)
    assert torch.equal(mpga.seen_grads[0], pga.seen_grads[0])


def test_neighbourhoods():
    assert neighbourhoods("star", 4, 2) == [[2], [2], [0, 1, 3], [2]]
    assert neighbourhoods("all", 3, 0) == [[1, 2], [0, 2], [0, 1]]


def test_refuses_one_task_and_a_weighting_other_than_ew():
    with pytest.raises(UserError, match=r"closure: mpga needs at least two objectives"):
        MPGA().check(FakeDomain(["a"]), EW(["a"]))
    with pytest.raises(UserError, match=r"the weighting must be ew; got weighting 'mgda'"):
        MPGA().check(FakeDomain(["a", "b", "c"]), MGDA(["a", "b", "c"]))
    with pytest.raises(UserError, match=r"closure\.neighbourhood"):
        MPGA(neighbourhood="ring")
