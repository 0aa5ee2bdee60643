"""Tests of the safe-MTL metrics (DESIGN.md §7; spec/thesis.md §1.4 and §6)."""

import math
import warnings

import pytest

from mtl_platform import metrics

UP = {"higher_is_better": True, "in_delta_p": True}
DOWN = {"higher_is_better": False, "in_delta_p": True}
DOWN_NOT_COUNTED = {"higher_is_better": False, "in_delta_p": False}

# Two tasks: seg (accuracy ↑, error ↓) and depth (abs ↓, plus a loss that is not in Δp).
SPEC = {"seg": {"acc": UP, "err": DOWN}, "depth": {"abs": DOWN, "loss": DOWN_NOT_COUNTED}}
STL = {"seg": {"acc": 0.80, "err": 0.20}, "depth": {"abs": 0.50, "loss": 1.0}}
MTL = {"seg": {"acc": 0.84, "err": 0.22}, "depth": {"abs": 0.45, "loss": 1.2}}


def test_deltas_by_hand():
    # acc ↑: +(0.84 − 0.80) = +0.04; err ↓: −(0.22 − 0.20) = −0.02
    # abs ↓: −(0.45 − 0.50) = +0.05; loss ↓: −(1.2 − 1.0) = −0.2
    d = metrics.deltas(MTL, STL, SPEC)
    assert d["seg"]["acc"] == pytest.approx(0.04)
    assert d["seg"]["err"] == pytest.approx(-0.02)
    assert d["depth"]["abs"] == pytest.approx(0.05)
    assert d["depth"]["loss"] == pytest.approx(-0.2)


def test_relative_deltas_delta_p_and_eta_by_hand():
    # seg:   100 · (0.04/0.80 + (−0.02)/0.20) / 2 = 100 · (0.05 − 0.10) / 2 = −2.5 %
    # depth: 100 · 0.05/0.50 = +10 % (the loss is not in Δp)
    # Δp = (−2.5 + 10) / 2 = 3.75 %
    # η: seg 1/2 safe, depth 1/1 safe -> 100 · (0.5 + 1) / 2 = 75 %
    rel = metrics.relative_deltas(MTL, STL, SPEC)
    assert rel == pytest.approx({"seg": -2.5, "depth": 10.0})
    assert metrics.delta_p(MTL, STL, SPEC) == pytest.approx(3.75)
    assert metrics.eta(MTL, STL, SPEC) == pytest.approx(75.0)


def test_direction_awareness():
    up = {"t": {"m": UP}}
    down = {"t": {"m": DOWN}}
    mtl, stl = {"t": {"m": 1.1}}, {"t": {"m": 1.0}}
    assert metrics.deltas(mtl, stl, up)["t"]["m"] == pytest.approx(0.1)
    assert metrics.deltas(mtl, stl, down)["t"]["m"] == pytest.approx(-0.1)
    assert metrics.delta_p(mtl, stl, up) == pytest.approx(10.0)
    assert metrics.delta_p(mtl, stl, down) == pytest.approx(-10.0)
    assert metrics.eta(mtl, stl, up) == 100.0
    assert metrics.eta(mtl, stl, down) == 0.0


def test_ties_count_as_safe():
    assert metrics.eta(STL, STL, SPEC) == 100.0
    assert metrics.delta_p(STL, STL, SPEC) == 0.0


def test_metric_not_in_delta_p_does_not_count_in_eta():
    # Only the uncounted loss gets worse: η stays 100.
    mtl = {"seg": dict(STL["seg"]), "depth": {"abs": 0.50, "loss": 9.0}}
    assert metrics.eta(mtl, STL, SPEC) == 100.0
    assert metrics.delta_p(mtl, STL, SPEC) == 0.0


def test_stl_zero_is_warned_and_left_out():
    stl = {"seg": {"acc": 0.0, "err": 0.20}, "depth": {"abs": 0.50, "loss": 1.0}}
    with pytest.warns(UserWarning, match=r"'seg'.*'acc'"):
        rel = metrics.relative_deltas(MTL, stl, SPEC)
    # seg keeps only err: 100 · (−0.02/0.20) = −10 %; depth +10 %.
    assert rel == pytest.approx({"seg": -10.0, "depth": 10.0})
    with pytest.warns(UserWarning):
        assert metrics.delta_p(MTL, stl, SPEC) == pytest.approx(0.0)
    # η still counts the metric: acc Δ = +0.84 is safe, err is not -> (0.5 + 1) / 2.
    assert metrics.eta(MTL, stl, SPEC) == pytest.approx(75.0)


def test_task_with_only_zero_stl_drops_out_of_delta_p():
    stl = {"seg": {"acc": 0.0, "err": 0.0}, "depth": {"abs": 0.50, "loss": 1.0}}
    with pytest.warns(UserWarning):
        assert metrics.relative_deltas(MTL, stl, SPEC) == pytest.approx({"depth": 10.0})
    with pytest.warns(UserWarning):
        assert metrics.delta_p(MTL, stl, SPEC) == pytest.approx(10.0)  # depth alone, not (0 + 10)/2


def test_no_warning_without_zero_stl():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        metrics.delta_p(MTL, STL, SPEC)


@pytest.mark.parametrize("which", ["mtl", "stl"])
def test_missing_metric_is_a_clear_error(which):
    broken = {"seg": {"acc": 0.8}, "depth": {"abs": 0.5, "loss": 1.0}}
    mtl, stl = (broken, STL) if which == "mtl" else (MTL, broken)
    with pytest.raises(ValueError, match=r"'seg'.*'err'"):
        metrics.delta_p(mtl, stl, SPEC)
    with pytest.raises(ValueError, match=r"'depth'"):
        metrics.eta(MTL, {"seg": STL["seg"]}, SPEC)


def test_nothing_counting_in_delta_p_is_an_error():
    spec = {"t": {"loss": DOWN_NOT_COUNTED}}
    with pytest.raises(ValueError, match="Δp"):
        metrics.delta_p({"t": {"loss": 1.0}}, {"t": {"loss": 2.0}}, spec)


def _from_signed_improvements(stl, signed, spec):
    """M from a Ch.6 table row, which prints Δ (positive = better): M = STL ± Δ."""
    return {
        t: {j: stl[t][j] + (1 if spec[t][j]["higher_is_better"] else -1) * signed[t][j] for j in spec[t]}
        for t in spec
    }


CITYSCAPES_SPEC = {"seg": {"miou": UP, "pix_err": DOWN}, "depth": {"abs_err": DOWN, "rel_err": DOWN}}
# thesis.md §6.2, Table 6.1 (Ch.6, CityScapes, ResNet-50): STL row.
CITYSCAPES_STL = {"seg": {"miou": 67.48, "pix_err": 9.00}, "depth": {"abs_err": 0.0139, "rel_err": 46.2507}}


@pytest.mark.parametrize(
    "row, delta_i, eta",
    [
        # Cross-stitch: +0.53 +0.29 +0.0004 +1.8261 | Δ_I +0.0271 | η 100
        ((0.53, 0.29, 0.0004, 1.8261), 0.0271, 100),
        # MTAN: +1.49 +0.59 +0.0003 +2.4999 | Δ_I +0.0408 | η 100
        ((1.49, 0.59, 0.0003, 2.4999), 0.0408, 100),
        # HPS: −0.08 −0.08 −0.0003 +0.8245 | Δ_I −0.0035 | η 25 (seg 0/2, depth 1/2)
        ((-0.08, -0.08, -0.0003, 0.8245), -0.0035, 25),
        # MaxRoam: −0.76 +0.33 −0.0003 +3.9607 | Δ_I +0.0224 | η 50
        ((-0.76, 0.33, -0.0003, 3.9607), 0.0224, 50),
    ],
)
def test_reproduces_thesis_cityscapes_ch6(row, delta_i, eta):
    # Ch.6 prints Δ_I as a fraction: Δp = 100 · Δ_I. The Pix Err STL (9.00) is the denominator.
    # Cross-stitch by hand: seg (0.53/67.48 + 0.29/9.00)/2 = 0.020042, depth (0.0004/0.0139 +
    # 1.8261/46.2507)/2 = 0.034129, Δ_I = (0.020042 + 0.034129)/2 = 0.027085 -> 0.0271.
    signed = {"seg": {"miou": row[0], "pix_err": row[1]}, "depth": {"abs_err": row[2], "rel_err": row[3]}}
    mtl = _from_signed_improvements(CITYSCAPES_STL, signed, CITYSCAPES_SPEC)
    assert metrics.deltas(mtl, CITYSCAPES_STL, CITYSCAPES_SPEC)["depth"]["rel_err"] == pytest.approx(row[3])
    assert round(metrics.delta_p(mtl, CITYSCAPES_STL, CITYSCAPES_SPEC) / 100, 4) == delta_i
    assert metrics.eta(mtl, CITYSCAPES_STL, CITYSCAPES_SPEC) == pytest.approx(eta)


def test_reproduces_thesis_nyuv2_maxroam_eta():
    # thesis.md §1.4 / Table 6.2 MaxRoam: seg (+1.42, +0.41) -> 2/2; depth (+0.0078, −0.0068) -> 1/2;
    # normal (+0.36, +0.51, −2.03, −1.55, −2.46) -> 2/5.  η = 100 · (1 + 0.5 + 0.4)/3 = 63.3 -> printed 63.
    spec = {
        "seg": {"miou": UP, "pix_err": DOWN},
        "depth": {"abs": DOWN, "rel": DOWN},
        "normal": {"mean": DOWN, "median": DOWN, "a11": UP, "a22": UP, "a30": UP},
    }
    stl = {
        "seg": {"miou": 53.11, "pix_err": 4.80},
        "depth": {"abs": 0.3957, "rel": 0.1632},
        "normal": {"mean": 22.26, "median": 15.49, "a11": 38.61, "a22": 64.43, "a30": 74.69},
    }
    signed = {
        "seg": {"miou": 1.42, "pix_err": 0.41},
        "depth": {"abs": 0.0078, "rel": -0.0068},
        "normal": {"mean": 0.36, "median": 0.51, "a11": -2.03, "a22": -1.55, "a30": -2.46},
    }
    mtl = _from_signed_improvements(stl, signed, spec)
    value = metrics.eta(mtl, stl, spec)
    assert value == pytest.approx(100 * (1 + 0.5 + 0.4) / 3)
    assert round(value) == 63


def test_mean_std():
    assert metrics.mean_std([1.0, 2.0, 3.0]) == pytest.approx((2.0, 1.0))  # sample std, ddof=1
    assert metrics.mean_std([5.0]) == (5.0, 0.0)
    assert metrics.mean_std([0.35, 0.35, 0.35])[1] == 0.0  # not 6.8e-17 from the mean's rounding
    with pytest.raises(ValueError):
        metrics.mean_std([])


def test_p_values_need_three_values():
    assert metrics.p_value_vs_zero([1.0, 2.0]) is None
    assert metrics.p_value_welch([1.0, 2.0], [1.0, 2.0, 3.0]) is None
    assert metrics.p_value_welch([1.0, 2.0, 3.0], [1.0, 2.0]) is None


def test_p_value_vs_zero_known_value():
    # [1, 2, 3]: mean 2, sd 1, t = 2/(1/√3) = 2√3, df = 2. For df = 2 the two-sided p-value is
    # 1 − t/√(t² + 2) = 1 − √12/√14 = 0.0741799...
    assert metrics.p_value_vs_zero([1.0, 2.0, 3.0]) == pytest.approx(1 - math.sqrt(12 / 14))
    assert metrics.p_value_vs_zero([-1.0, -2.0, -3.0]) == pytest.approx(1 - math.sqrt(12 / 14))


def test_p_value_welch_known_value():
    # [1,2,3] vs [4,5,6]: t = −3/√(1/3 + 1/3) = −3.6742, Welch df = 4. For df = 4 the two-sided
    # p-value is 1 − x(3 − x²)/2 with x = |t|/√(t² + 4)  -> 0.021311641...
    t = 3 / math.sqrt(2 / 3)
    x = t / math.sqrt(t * t + 4)
    assert metrics.p_value_welch([1.0, 2.0, 3.0], [4.0, 5.0, 6.0]) == pytest.approx(1 - x * (3 - x * x) / 2)
    assert metrics.p_value_welch([1.0, 2.0, 3.0], [4.0, 5.0, 6.0]) == pytest.approx(0.0213116, abs=1e-6)


def test_p_values_degenerate_zero_variance():
    assert metrics.p_value_vs_zero([0.0, 0.0, 0.0]) == 1.0
    assert metrics.p_value_vs_zero([0.5, 0.5, 0.5]) == 0.0
    assert metrics.p_value_welch([1.0, 1.0, 1.0], [1.0, 1.0, 1.0]) == 1.0
    assert metrics.p_value_welch([1.0, 1.0, 1.0], [2.0, 2.0, 2.0]) == 0.0
    # One sample varies: the ordinary Welch test applies and is finite.
    p = metrics.p_value_welch([1.0, 1.0, 1.0], [1.0, 2.0, 3.0])
    assert 0.0 < p < 1.0
