"""Safe-MTL metrics: per-metric Δ, Δp and the safeness coefficient η (DESIGN.md §7).

Over tasks t with metrics j, where ``p_tj = 1`` when lower is better:

- ``Δ_tj = (−1)^{p_tj} (M_tj − STL_tj)``, positive meaning better than single-task learning;
- ``Δp = 100 · (1/m) Σ_t (1/m_t) Σ_j Δ_tj / STL_tj``: LibMTL's Δp, the thesis's Δ_I (Ch.5 in
  percent, Ch.6 as a fraction) times 100 where needed;
- ``η = 100 · (1/m) Σ_t (1/m_t) Σ_j 1[Δ_tj ≥ 0]``: the thesis's safeness coefficient (Ch.6).

A *spec* says, per task and metric, ``{"higher_is_better": bool, "in_delta_p": bool}``; only
metrics with ``in_delta_p`` count in Δp and η. Scores are ``{task: {metric: float}}``.
Pure Python and numpy; scipy is imported only by the p-value functions.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

import numpy as np

Spec = Mapping[str, Mapping[str, Mapping[str, bool]]]
Scores = Mapping[str, Mapping[str, float]]


def require(scores: Scores, spec: Spec, name: str) -> None:
    """Raise ValueError if a task or metric of ``spec`` is missing from ``scores``."""
    for task, metrics in spec.items():
        for metric in metrics:
            if metric not in scores.get(task, {}):
                raise ValueError(f"{name} scores have no value for task {task!r}, metric {metric!r}")


def deltas(mtl: Scores, stl: Scores, spec: Spec) -> dict[str, dict[str, float]]:
    """``Δ_tj = (−1)^{p_tj} (M_tj − STL_tj)`` for every metric of the spec."""
    require(mtl, spec, "MTL")
    require(stl, spec, "STL")
    return {
        task: {
            metric: (1.0 if how["higher_is_better"] else -1.0) * (mtl[task][metric] - stl[task][metric])
            for metric, how in metrics.items()
        }
        for task, metrics in spec.items()
    }


def relative_deltas(mtl: Scores, stl: Scores, spec: Spec) -> dict[str, float]:
    """Per task, ``100 · (1/m_t) Σ_j Δ_tj / STL_tj`` in percent, over the metrics that count.

    A metric counts when its ``in_delta_p`` is true and its STL value is not 0; an STL value of
    0 is warned about and left out. A task with no counting metric is absent from the result.
    """
    delta = deltas(mtl, stl, spec)
    out = {}
    for task, metrics in spec.items():
        ratios = []
        for metric, how in metrics.items():
            if not how["in_delta_p"]:
                continue
            if stl[task][metric] == 0:
                warnings.warn(
                    f"STL value of task {task!r}, metric {metric!r} is 0: left out of Δp", stacklevel=2
                )
                continue
            ratios.append(delta[task][metric] / stl[task][metric])
        if ratios:
            out[task] = 100.0 * sum(ratios) / len(ratios)
    return out


def delta_p(mtl: Scores, stl: Scores, spec: Spec) -> float:
    """LibMTL's Δp in percent: the mean over tasks of :func:`relative_deltas`."""
    per_task = relative_deltas(mtl, stl, spec)
    if not per_task:
        raise ValueError("no metric counts in Δp: none has in_delta_p set and a non-zero STL value")
    return sum(per_task.values()) / len(per_task)


def eta(mtl: Scores, stl: Scores, spec: Spec) -> float:
    """The safeness coefficient η in percent; ties (Δ = 0) count as safe."""
    return eta_from_deltas(deltas(mtl, stl, spec), spec)


def eta_from_deltas(delta: Mapping[str, Mapping[str, float]], spec: Spec) -> float:
    """η in percent from given Δ values: ``100 · (1/m) Σ_t (1/m_t) Σ_j 1[Δ_tj ≥ 0]`` over the
    metrics in Δp. The report applies it to one seed's Δ (that seed's η) and to the mean Δ
    over seeds ("η of the mean Δ", the share the report's safe column shows)."""
    per_task = []
    for task, metrics in spec.items():
        safe = [delta[task][metric] >= 0 for metric, how in metrics.items() if how["in_delta_p"]]
        if safe:
            per_task.append(sum(safe) / len(safe))
    if not per_task:
        raise ValueError("no metric counts in η: none has in_delta_p set")
    return 100.0 * sum(per_task) / len(per_task)


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1) of per-seed values.

    The std is exactly 0.0 for one value or identical values (no rounding residue from the mean).
    """
    if len(values) == 0:
        raise ValueError("mean_std needs at least one value")
    arr = np.asarray(values, dtype=float)
    return float(arr.mean()), (float(arr.std(ddof=1)) if np.ptp(arr) > 0 else 0.0)


def _degenerate(a: np.ndarray, b: np.ndarray) -> float | None:
    """The p-value when neither sample varies (1.0 for equal means, else 0.0); None otherwise."""
    if np.ptp(a) == 0 and np.ptp(b) == 0:
        return 1.0 if a[0] == b[0] else 0.0
    return None


def p_value_vs_zero(values: Sequence[float]) -> float | None:
    """Two-sided one-sample t-test of per-seed values against 0 ("distinguishable from zero").

    This is Welch's test against a constant (DESIGN.md §7). None with fewer than 3 values.
    """
    if len(values) < 3:
        return None
    from scipy import stats

    arr = np.asarray(values, dtype=float)
    fixed = _degenerate(arr, np.zeros(1))
    return fixed if fixed is not None else float(stats.ttest_1samp(arr, 0.0).pvalue)


def p_value_welch(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Welch's two-sample t-test p-value ("better than method B"); None if either has < 3 values."""
    if len(a) < 3 or len(b) < 3:
        return None
    from scipy import stats

    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    fixed = _degenerate(x, y)
    if fixed is not None:
        return fixed
    with warnings.catch_warnings():
        # One constant sample is exact here, not the precision loss scipy warns about.
        warnings.filterwarnings("ignore", "Precision loss", RuntimeWarning)
        return float(stats.ttest_ind(x, y, equal_var=False).pvalue)

