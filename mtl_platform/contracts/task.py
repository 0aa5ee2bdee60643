"""A task: name, loss and metrics (DESIGN.md §2). Tasks own no data and no model."""
from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from ..errors import UserError
from ..labels import fill_missing, masked_mean


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

    Partial labels (``mtl_platform.labels``): a task that defines ``sample_losses`` (one loss
    per sample, whose mean is ``loss``) takes batches where some samples lack its label;
    ``labelled_loss`` and ``labelled_sums`` are what the domain calls.
    """

    metrics: tuple[Metric, ...] = ()

    def __init__(self, name: str):
        self.name = name

    def loss(self, pred: Tensor, target: Tensor) -> Tensor:
        raise NotImplementedError

    def sample_losses(self, pred: Tensor, target: Tensor) -> Tensor:
        """The loss of each sample, shape (n,), whose mean is ``loss``. Needed only for partial labels."""
        raise NotImplementedError

    def labelled_loss(self, pred: Tensor, target: Tensor, labelled: Tensor | None = None) -> Tensor:
        """``loss`` over the samples where ``labelled`` (n,) is True: the mean of ``sample_losses``
        over them (``labels.masked_mean``), exactly 0 with a zero gradient when there are none.
        ``labelled`` None: every sample is labelled, and this is ``loss`` itself."""
        if labelled is None:
            return self.loss(pred, target)
        if type(self).sample_losses is Task.sample_losses:
            raise UserError(f"task {self.name!r} ({type(self).__name__}) cannot take missing labels: it "
                            f"defines no per-sample loss (sample_losses)")
        return masked_mean(self.sample_losses(pred, fill_missing(target, labelled)), labelled)

    def metric_sums(self, pred: Tensor, target: Tensor) -> dict[str, Tensor]:
        raise NotImplementedError

    def labelled_sums(self, pred: Tensor, target: Tensor, labelled: Tensor | None = None) -> dict[str, Tensor]:
        """``metric_sums`` over the samples where ``labelled`` (n,) is True (all when None).

        The rows are selected by boolean indexing: evaluation only, never the training loop (on
        CUDA the selection waits for the device once per evaluation batch)."""
        if labelled is None:
            return self.metric_sums(pred, target)
        return self.metric_sums(pred[labelled], target[labelled])

    def finalize(self, sums: dict[str, Tensor]) -> dict[str, float]:
        raise NotImplementedError

    def spec(self) -> dict[str, dict[str, bool]]:
        return {m.name: {"higher_is_better": m.higher_is_better, "in_delta_p": m.in_delta_p}
                for m in self.metrics}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"
