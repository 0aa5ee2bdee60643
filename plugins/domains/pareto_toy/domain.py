"""The CAGrad toy problem as a task domain: the model is the point x ∈ ℝ², each task one objective."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from mtl_platform.batches import TensorTaskDataset
from mtl_platform.contracts import Domain, Metric, StagedEncoder, Task
from mtl_platform.params import Param

from .objectives import objectives, pareto_front

TASKS = ("f1", "f2")


class Point(nn.Module):
    """The only parameters: x, returned for every sample of the batch."""

    def __init__(self, init):
        super().__init__()
        self.x = nn.Parameter(torch.tensor([float(v) for v in init]))

    def forward(self, inputs: Tensor) -> Tensor:
        return self.x.expand(inputs.shape[0], 2)


#: every f_i > −20 (c₁h_i ≥ −6.21 above the axis, c₂g_i > −20 below it), so f_i + 20 > 0
SHIFT = 20.0


class Objective(Task):
    """Objective ``f_i`` of the toy at the model's point. The loss is f_i; the metrics are
    ``shifted`` = f_i + 20 (positive, so Δp, a ratio to the STL value, is defined; the Pareto
    plot uses it) and ``value`` = f_i itself (reported, not in Δp). Lower is better."""

    metrics = (Metric("shifted", higher_is_better=False), Metric("value", higher_is_better=False, in_delta_p=False))

    def __init__(self, name: str, index: int):
        super().__init__(name)
        self.index = index

    def loss(self, pred: Tensor, target: Tensor) -> Tensor:
        return objectives(pred)[:, self.index].mean()

    def metric_sums(self, pred: Tensor, target: Tensor) -> dict[str, Tensor]:
        return {"sum": objectives(pred.double())[:, self.index].sum(),
                "count": torch.tensor(pred.shape[0], device=pred.device)}

    def finalize(self, sums: dict[str, Tensor]) -> dict[str, float]:
        total, count = torch.stack([sums["sum"].double(), sums["count"].double()]).tolist()
        return {"shifted": total / count + SHIFT, "value": total / count}


class ParetoToy(Domain):
    """The two-objective toy of CAGrad (Liu et al. 2021, Appendix) and Nash-MTL (Navon et al. 2022,
    §6.1): tasks f1 and f2 of a point x ∈ ℝ² (the model), with a known Pareto front (``objectives``).

    Procedural, no data: every "batch" is ``batch_size`` copies of one dummy input, so an epoch
    is ``steps`` optimizer steps from ``init``. Results record the analytic front
    (``known_front``, in the ``shifted`` metric f_i + 20), which ``mtl report`` draws under the
    runs (report_pareto.png). The
    paper's starting points include (−8.5, 7.5), (−8.5, −5), (9, 9), (−7.5, −0.5), (9, −1).
    Use it with an architecture that adds no task parameters of its own (``hps``: heads are
    the identity).
    """

    name = "pareto_toy"
    params = (
        Param("init", list, [-8.5, 7.5], "starting point (x1, x2)", item=float, bounds="[-10, 10]"),
        Param("steps", int, 100, "optimizer steps per epoch", bounds="[1, inf)"),
    )

    def build_tasks(self):
        if len(self.config["init"]) != 2:
            from mtl_platform.errors import UserError

            raise UserError(f"domain.init: got {self.config['init']}, expected two numbers (x1, x2)")
        return [Objective(name, i) for i, name in enumerate(TASKS)]

    def prepare(self) -> None:
        sizes = {"train": self.config["steps"] * self.config["batch_size"], "val": 1, "test": 1}
        for split, n in sizes.items():
            self._datasets[split] = TensorTaskDataset(torch.zeros(n, 1), {t: torch.zeros(n) for t in self.task_names})

    def load_split(self, split):
        self.prepare()
        return self._datasets[split]

    def encoder_factory(self):
        return StagedEncoder([Point(self.config["init"])], out_shape=(2,), stage_shapes=[(2,)])

    def head_factory(self, task):
        return nn.Identity()

    def run_info(self) -> dict:
        """The analytic Pareto front in the tasks' ``shifted`` metric (``objectives.pareto_front``)."""
        tasks = [t for t in TASKS if t in self.task_names]
        if len(tasks) < 2:
            return {}
        points = [[f + SHIFT for f in p] for p in pareto_front(101)]
        return {"known_front": {"metric": "shifted", "tasks": tasks, "points": points}}
