"""The weightings that TorchJD also implements, against its aggregators (a differential oracle,
used only when ``torchjd`` is installed: the project does not depend on it) on random
Jacobians and on the hard families where both are defined.

Known, documented differences, which the comparisons avoid rather than hide: TorchJD's
FairGrad runs scipy's ``least_squares`` (tolerances ~1e-8; ours is solved to ~1e-15, with
``eps: 0``, no ridge); its ExcessMTL keeps simplex weights (ours sum to m) and divides by
the baseline + 1e-7; its DualProj adds a ridge (``reg_eps``) to the normalised Gramian for quadprog (here it is made
1e-14; the answers differ by about that ridge); its Krum picks one of tied scores by index where ours selects every tied one, so
Krum is compared only where the ``n_selected``-th score is not tied, and with
``squared: false`` (TorchJD scores with plain distances, the paper with squared ones).
"""
from __future__ import annotations

import pytest
import torch

from mtl_platform.gradients.combine import call_weighting
from mtl_platform_plugins.weightings.config_grad import ConFIG
from mtl_platform_plugins.weightings.dualproj import DualProj
from mtl_platform_plugins.weightings.excess_mtl import ExcessMTL
from mtl_platform_plugins.weightings.fairgrad import FairGrad
from mtl_platform_plugins.weightings.krum import Krum
from mtl_platform_plugins.weightings.modo import MoDo
from mtl_platform_plugins.weightings.sdmgrad import SDMGrad
from mtl_platform_plugins.weightings.trimmed_mean import TrimmedMean

from hard_jacobians import hard_jacobian

aggregation = pytest.importorskip("torchjd.aggregation")

F64 = torch.float64


def tasks(m):
    return [f"t{i}" for i in range(m)]


def random_jacobians(count=4, p=30):
    """Random float64 Jacobians, m = 2…10, each with one conflicting pair."""
    for m in range(2, 11):
        for seed in range(count):
            gen = torch.Generator().manual_seed(100 * m + seed)
            jac = torch.randn(m, p, generator=gen, dtype=F64)
            jac[1] = -0.8 * jac[0] + 0.3 * jac[1]
            yield m, jac


def ours(weighting, jac):
    return call_weighting(weighting, torch.ones(jac.shape[0], dtype=jac.dtype), jac)


def close(a, b, rtol, jac=None):
    """Equal up to ``rtol`` relative to the reference's largest entry, or, given ``jac``, to its
    largest entry (an update that cancels to near 0 is compared at the gradients' scale)."""
    scale = float((b if jac is None else jac).abs().max())
    return torch.allclose(a, b, rtol=rtol, atol=rtol * scale + 1e-300)


def test_dualproj_matches_torchjd():
    from torchjd.linalg import QuadprogProjector

    reference = aggregation.DualProj(projector=QuadprogProjector(norm_eps=0.0, reg_eps=1e-14))
    for m, jac in random_jacobians():
        assert close(ours(DualProj(tasks(m)), jac)[1], reference(jac), 1e-8), m
    for kind in ("random", "near_opposite", "huge", "tiny"):
        for m in range(2, 11):
            jac = hard_jacobian(kind, m, F64)
            assert close(ours(DualProj(tasks(m)), jac)[1], reference(jac), 1e-9, jac), (kind, m)


def test_config_matches_torchjd():
    reference = aggregation.ConFIG()
    for m, jac in random_jacobians():
        assert close(ours(ConFIG(tasks(m)), jac)[1], reference(jac), 1e-10), m
    for kind in ("random", "spread", "huge", "tiny", "identical", "zero_row"):
        for m in range(2, 11):
            jac = hard_jacobian(kind, m, F64)
            assert close(ours(ConFIG(tasks(m)), jac)[1], reference(jac), 1e-8), (kind, m)


def test_krum_matches_torchjd_where_no_score_ties():
    compared = 0
    for m, jac in random_jacobians():
        for f in range(0, m - 2):
            for selected in range(1, m + 1):
                w, d = ours(Krum(tasks(m), n_byzantine=f, n_selected=selected, squared=False), jac)
                if int((w > 0).sum()) != selected:         # a tie at the n_selected-th score
                    continue
                compared += 1
                assert torch.equal(d, aggregation.Krum(f, selected)(jac)), (m, f, selected)
    assert compared > 500


def test_trimmed_mean_matches_torchjd():
    for m, jac in random_jacobians():
        for trim in range(0, (m - 1) // 2 + 1):
            assert close(ours(TrimmedMean(tasks(m), trim=trim), jac)[1], aggregation.TrimmedMean(trim)(jac), 1e-12)
    for kind in ("spread", "huge", "tiny", "near_opposite", "zero_row"):
        for m in range(3, 11):
            jac = hard_jacobian(kind, m, torch.float32)
            assert close(ours(TrimmedMean(tasks(m)), jac)[1], aggregation.TrimmedMean(1)(jac), 1e-6, jac), (kind, m)


def test_modo_matches_torchjd_over_several_steps():
    for m in range(2, 11):
        gen = torch.Generator().manual_seed(m)
        ours_w, reference = MoDo(tasks(m), gamma=0.05, rho=0.1), aggregation.MoDoWeighting(gamma=0.05, rho=0.1)
        for _ in range(5):
            jac = torch.randn(m, 20, generator=gen, dtype=F64)
            gram = jac @ jac.T
            assert torch.allclose(ours_w.respond(torch.ones(m, dtype=F64), gram=gram), reference(gram),
                                  rtol=1e-12, atol=1e-14), m


def test_sdmgrad_matches_torchjd_over_several_steps():
    """TorchJD divides G by s² + 1e-8 where ours divides by s² (scale-free): it gets the Gramian
    times 1e8, where the 1e-8 is below rounding (at G's own scale the inner SGD with lr 5
    amplifies the 1e-8 to differences of ~1e-5 in the weights)."""
    for m in range(2, 11):
        gen = torch.Generator().manual_seed(m)
        ours_w, reference = SDMGrad(tasks(m)), aggregation.SDMGradWeighting(lr=5.0)
        for _ in range(3):
            jac = torch.randn(m, 20, generator=gen, dtype=F64)
            gram = jac @ jac.T
            assert torch.allclose(ours_w.respond(torch.ones(m, dtype=F64), gram=gram), reference(1e8 * gram),
                                  atol=1e-9), m


def test_fairgrad_matches_torchjd():
    """TorchJD's weights come from scipy's least squares, exact to its default tolerances (~1e-8)."""
    pytest.importorskip("scipy")
    for alpha in (0.5, 1.0, 2.0, 5.0):
        reference = aggregation.FairGradWeighting(alpha)
        for m, jac in random_jacobians(count=2):
            gram = jac @ jac.T
            w = FairGrad(tasks(m), alpha=alpha, eps=0.0).respond(torch.ones(m, dtype=F64), gram=gram)
            assert close(w, reference(gram), 1e-7), (alpha, m)


def test_excess_mtl_matches_torchjd_over_several_steps():
    """TorchJD with ``n_warmup_steps`` = n ≥ 1 is ours with ``warmup_steps`` = n, its weights on the
    simplex (ours / m); its baseline + 1e-7 moves the weights by ~1e-7 relative (checked to 1e-6).
    (Its n = 0, which updates on the first call with the raw excess, has no counterpart here.)"""
    for n in (1, 3):
        for m in range(2, 11):
            gen = torch.Generator().manual_seed(m)
            ours_w = ExcessMTL(tasks(m), step_size=0.5, warmup_steps=n)
            reference = aggregation.ExcessMTLWeighting(robust_step_size=0.5, n_warmup_steps=n)
            scales = torch.logspace(-1, 1, m, dtype=F64)[:, None]
            for _ in range(8):
                jac = scales * torch.randn(m, 20, generator=gen, dtype=F64)
                w = ours_w.respond(torch.ones(m, dtype=F64), jacobian=jac)
                assert torch.allclose(w / m, reference(jac), rtol=1e-6, atol=0), (n, m)
