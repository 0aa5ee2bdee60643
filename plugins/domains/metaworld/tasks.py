"""A Meta-World task as the platform sees it: evaluated by success rate (Δp, η) and return."""
from __future__ import annotations

from mtl_platform.contracts.task import Metric, Task


class ControlTask(Task):
    """One Meta-World environment. Its losses are the protocol's (SAC), not ``loss``; its metrics
    come from evaluation episodes: ``success`` (the fraction of episodes in which Meta-World's
    success flag was raised at some step; counts in Δp and η) and ``return`` (the mean
    undiscounted episode return; reported only)."""

    metrics = (Metric("success", higher_is_better=True), Metric("return", higher_is_better=True, in_delta_p=False))
