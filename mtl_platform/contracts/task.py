"""A task: name, loss and metrics (DESIGN.md §2). Tasks own no data and no model."""
from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor


@dataclass(frozen=True)
class Metric:
    """One evaluation metric and whether it counts in Δp and η (DESIGN.md §7)."""

    name: str
    higher_is_better: bool
    in_delta_p: bool = True


class Task:
    """Base task. Subclasses define ``loss``, ``metric_sums`` and ``finalize``.

    Metrics are accumulated on the device as sums over a split (``metric_sums`` returns
    tensors to add up); ``finalize`` turns the sums into values once, at the end.
    """

    metrics: tuple[Metric, ...] = ()

    def __init__(self, name: str):
        self.name = name

    def loss(self, pred: Tensor, target: Tensor) -> Tensor:
        raise NotImplementedError

    def metric_sums(self, pred: Tensor, target: Tensor) -> dict[str, Tensor]:
        raise NotImplementedError

    def finalize(self, sums: dict[str, Tensor]) -> dict[str, float]:
        raise NotImplementedError

    def spec(self) -> dict[str, dict[str, bool]]:
        return {m.name: {"higher_is_better": m.higher_is_better, "in_delta_p": m.in_delta_p}
                for m in self.metrics}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"
