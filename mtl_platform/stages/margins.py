"""How clearly a search decided: each derived decision's margin (the softmax gap between the
chosen option and the runner-up, and the distribution's entropy), and one warning line when
a decision is within noise.

Every search architecture exposes its decisions as ``{label: probabilities}`` (``decisions()``:
the distribution whose argmax derivation keeps); the derive stage records their margins in
the derived architecture and warns here, one mechanism for CoNAL, CoNAL-Pro, DSMTL-AL and LTB.
"""
from __future__ import annotations

import math
from typing import Callable, Mapping, Sequence

from ..params import Param

DEFAULT_MIN_MARGIN = 0.05
MIN_MARGIN = Param(
    "min_margin", float, DEFAULT_MIN_MARGIN,
    "a derived decision whose softmax gap (chosen minus runner-up probability) is below this is "
    "reported as within noise, with a warning; 0.05 = 5 points of mixing weight: on the quickstarts the "
    "thesis's learning rates left every gap at 0.0003-0.048, the default one gave 0.16-0.91 except one "
    "near-tie (docs/conal.md, 'Decision margins')", minimum=0.0)


def margin(probabilities: Sequence[float]) -> dict:
    """``{"chosen": argmax (0-based), "gap": p_(1) − p_(2), "entropy": −Σ p ln p (nats),
    "probabilities": ...}`` of one decision's distribution; a single option has gap 1."""
    probs = [float(p) for p in probabilities]
    if not probs:
        raise ValueError("a decision needs at least one option")
    order = sorted(range(len(probs)), key=lambda i: (-probs[i], i))
    gap = probs[order[0]] - probs[order[1]] if len(probs) > 1 else 1.0
    entropy = -sum(p * math.log(p) for p in probs if p > 0)
    return {"chosen": order[0], "gap": gap, "entropy": entropy, "probabilities": probs}


def margins(decisions: Mapping[str, Sequence[float]]) -> dict[str, dict]:
    """The margin of every decision, by label."""
    return {label: margin(p) for label, p in decisions.items()}


def within_noise(recorded: Mapping[str, dict], threshold: float) -> list[str]:
    """Labels of the decisions whose gap is below ``threshold``."""
    return [label for label, m in recorded.items() if m["gap"] < threshold]


def warning_line(recorded: Mapping[str, dict], threshold: float, stage: str) -> str | None:
    """One line naming every decision within noise, its gap and what to do; None if none is."""
    flat = within_noise(recorded, threshold)
    if not flat:
        return None
    named = ", ".join(f"{label} gap {recorded[label]['gap']:.2g}" for label in flat)
    return (f"warning: {stage}: {len(flat)} of {len(recorded)} decisions within noise (softmax gap below "
            f"architecture.search.min_margin = {threshold:g}: {named}); the derived architecture is not a "
            f"search result there; give the search more epochs (architecture.search.epochs) or a larger "
            f"architecture.search.alpha_lr")


def record(derived: dict, decisions: Mapping[str, Sequence[float]], threshold: float, stage: str,
           echo: Callable = print) -> dict:
    """Add ``margins`` (each decision's margin and whether it is ``within_noise``) and
    ``min_margin`` to ``derived``; echo the warning line if some decision is within noise."""
    recorded = margins(decisions)
    for m in recorded.values():
        m["within_noise"] = m["gap"] < threshold
    derived["margins"] = recorded
    derived["min_margin"] = threshold
    line = warning_line(recorded, threshold, stage)
    if line:
        echo(line)
    return derived
