"""What PGA and MPGA refuse when an experiment is built (one line each, before a run directory)."""
from __future__ import annotations

from mtl_platform.errors import UserError
from mtl_platform.params import did_you_mean

#: the one weighting PGA and MPGA combine with: they weight the task gradients themselves
PLAIN_SUM = "ew"


def require_plain_sum(method: str, weighting) -> None:
    if weighting.name != PLAIN_SUM:
        raise UserError(f"closure: {method} combines the task gradients with its own coefficients (tradeoff), so "
                        f"the weighting must be {PLAIN_SUM}; got weighting {weighting.name!r}")


def target_index(method: str, target: str | None, tasks: list[str]) -> int:
    """The index of ``target`` among the domain's loss terms (None: the first)."""
    if target is None:
        return 0
    if target not in tasks:
        raise UserError(f"closure.target: {method} got {target!r}, not a loss term of this domain"
                        f"{did_you_mean(target, tasks)}; loss terms: {', '.join(tasks)}")
    return tasks.index(target)
