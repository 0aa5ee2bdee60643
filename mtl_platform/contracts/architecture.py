"""The architecture contract (DESIGN.md §3.1)."""
from __future__ import annotations

from typing import Callable

from torch import nn

from .component import Configurable


class Architecture(Configurable, nn.Module):
    """Wires encoder copies and heads into one module.

    Built only from the domain's ``encoder_factory()`` and ``head_factory(task)``.
    Every trainable parameter is in exactly one of ``shared_parameters()``,
    ``task_parameters(t)`` (for some t) and ``architecture_parameters()``.
    ``rep`` is the shared representation of the last forward, if the architecture has one.

    A searched architecture declares the stages of its run (``stage_plan``, DESIGN.md §3.4),
    reports its search variables once per epoch (``search_state``) and turns them into a
    plain-JSON architecture config (``derive``) that a later stage rebuilds from code.
    ``default_weighting`` is the weighting a config gets when it names none (None: the
    default the plugins declare, ``Registry.set_default``). A search that learns a weighting
    (task weights) returns it from ``derive`` and says with ``checked_weighting`` what the
    run's config is checked with before the search has run.
    """

    has_rep = False
    default_weighting: dict | None = None

    @classmethod
    def stage_plan(cls, config: dict, *, domain, registry) -> list:
        """The stages of a run with this architecture (DESIGN.md §3.4), given the run's resolved
        ``config``, its built ``domain`` (the one every stage shares; its data may be loaded) and
        the ``registry``. Empty, the default: one ordinary training stage, which the stage
        runner (``stages.run_stages``) supplies."""
        return []

    @classmethod
    def checked_weighting(cls, weighting: dict, tasks: list[str]) -> dict:
        """The weighting section the run's config is checked with before training, given the
        resolved ``weighting`` and the run's ``tasks``. Default: ``weighting`` itself. An
        architecture whose ``derive()`` completes the run's weighting returns it completed
        with placeholders, so that everything else is checked before the run starts."""
        return weighting

    def __init__(self, tasks: list[str], encoder_factory: Callable[[], nn.Module],
                 head_factory: Callable[[str], nn.Module], **params):
        nn.Module.__init__(self)
        self.tasks = list(tasks)
        self.check_ranges(params, "architecture")
        self.config = params
        self.rep = None

    def forward(self, inputs):  # -> {task: prediction}
        raise NotImplementedError

    def shared_parameters(self) -> list[nn.Parameter]:
        raise NotImplementedError

    def task_parameters(self, task: str) -> list[nn.Parameter]:
        raise NotImplementedError

    def architecture_parameters(self) -> list[nn.Parameter]:
        return []

    def parameter_blocks(self) -> list[list[nn.Parameter]]:
        """Shared parameters grouped per encoder stage, in order (block-wise methods)."""
        return [self.shared_parameters()]

    # An architecture may also define ``set_epoch(epoch)``: the trainer calls it at the start of
    # every training epoch (0-based, also on resume), for epoch-dependent search schedules.

    def search_state(self) -> dict:
        """JSON-able search variables (α, gates, learned task weights) for the metrics log."""
        return {}

    def decisions(self) -> dict[str, list[float]]:
        """The distributions derivation takes the argmax of, ``{label: probabilities}`` (a
        task's softmax(α_t), a node's parent distribution); the derive stage records each
        one's margin (``stages/margins.py``). Empty for an architecture without a search."""
        return {}

    @classmethod
    def split_task_state(cls, state: dict, task: str) -> tuple[dict, dict]:
        """``(encoder state, head state)``: the encoder ``task`` reads and ``task``'s head, cut
        out of a state dict of this architecture, keyed as the modules of the domain's
        ``encoder_factory()`` and ``head_factory(task)`` load them — how a later stage reuses a
        trained single-task model (DSMTL-IL loads each task's STL model into its private parts)."""
        raise NotImplementedError(f"architecture {cls.name!r} does not split its state into a task's encoder "
                                  f"and head (it defines no split_task_state)")

    def derive(self) -> dict:
        """The search's result as plain JSON: ``architecture``, the derived architecture as a
        config section (``{"name": ..., **params}``), plus anything later stages and the report
        read (branch points, learned task weights). An optional ``weighting`` section, the
        weighting the search learned, completes the run's weighting in retraining when that
        names the same weighting (``stages.from_derived`` says how)."""
        raise NotImplementedError(f"architecture {self.name!r} has no derivation")

    def parameter_counts(self) -> dict:
        """Parameter counts: total (all), shared, per task, architecture and frozen parameters."""
        def count(params) -> int:
            return sum(p.numel() for p in params)

        return {"total": count(p for p in self.parameters()), "shared": count(self.shared_parameters()),
                "tasks": {t: count(self.task_parameters(t)) for t in self.tasks},
                "architecture": count(self.architecture_parameters()),
                "frozen": count(p for p in self.parameters() if not p.requires_grad)}
