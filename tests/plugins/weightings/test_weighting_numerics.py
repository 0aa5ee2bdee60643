"""Regressions of the numerical defects found by differential and property testing (issue 15):
0·∞ and overflowing clamps, state kept in the wrong precision, Gramians rounded to float32,
and divisions by a norm in the engine's diagnostics. The suites that would have caught each
class are ``test_weighting_properties.py`` and ``test_weighting_references.py``."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from mtl_platform import registry
from mtl_platform.gradients import GradientEngine
from mtl_platform.gradients.combine import call_weighting, gramian
from mtl_platform_plugins.weightings.db_mtl import DBMTL
from mtl_platform_plugins.weightings.equilibrium import Equilibrium
from mtl_platform_plugins.weightings.imtl import IMTL
from mtl_platform_plugins.weightings.mgda import MGDA
from mtl_platform_plugins.weightings.uw import UW

from conftest import weighting_args


def test_db_mtl_a_zero_task_contributes_nothing_beside_a_large_one():
    """It returned NaN in float32: max‖ĝ‖/clamped-0 overflowed to ∞ and ∞·0 = NaN."""
    for dtype in (torch.float32, torch.float64):
        gen = torch.Generator().manual_seed(0)
        big = 1e6 * torch.randn(2, 30, generator=gen, dtype=torch.float64).to(dtype)
        with_zero = torch.cat([torch.zeros(1, 30, dtype=dtype), big])
        losses = torch.tensor([0.5, 1.0, 2.0], dtype=dtype)
        update, _ = call_weighting(DBMTL(["z", "a", "b"]), losses, with_zero)
        alone, _ = call_weighting(DBMTL(["a", "b"]), losses[1:], big)
        assert torch.isfinite(update).all(), dtype
        assert torch.equal(update, alone), dtype


def test_db_mtl_a_task_without_a_log_contributes_nothing():
    """L_t + ε ≤ 0: log(L_t + ε) is undefined; 1/tiny overflowed to ∞ before."""
    jac = torch.randn(2, 10, dtype=torch.float64)
    update, _ = call_weighting(DBMTL(["a", "b"], eps=0.0), torch.tensor([0.0, 1.0], dtype=torch.float64), jac)
    alone, _ = call_weighting(DBMTL(["b"], eps=0.0), torch.tensor([1.0], dtype=torch.float64), jac[1:])
    assert torch.equal(update, alone)


def stateful_weightings():
    reg, _ = registry.load(builtin_only=True)
    for name in reg.names("weighting"):
        tasks = ["a", "b", "c"]
        weighting = reg.get("weighting", name).cls(tasks, **weighting_args(name, tasks))
        if any(t.is_floating_point() for t in [*weighting.parameters(), *weighting.buffers()]):
            yield name, weighting


def test_state_follows_the_working_precision_and_survives_a_checkpoint():
    """Equilibrium's persistent w (and the state of every other stateful weighting) stayed a
    float32 buffer under float64 gradients; a fresh weighting loading a float64 checkpoint must
    keep float64 too, or a resumed run is not bit for bit."""
    jac = torch.randn(3, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    losses = torch.tensor([0.3, 1.1, 2.0], dtype=torch.float64)
    names = []
    for name, weighting in stateful_weightings():
        names.append(name)
        call_weighting(weighting, losses, jac)
        state = weighting.state_dict()
        floats = {k: v.dtype for k, v in state.items() if torch.is_tensor(v) and v.is_floating_point()}
        assert set(floats.values()) <= {torch.float64}, (name, floats)
        _, fresh = next((n, w) for n, w in stateful_weightings() if n == name)
        fresh.load_state_dict(state)
        for key, value in fresh.state_dict().items():
            if torch.is_tensor(value) and value.is_floating_point():
                assert value.dtype == torch.float64 and torch.equal(value, state[key]), (name, key)
    assert {"equilibrium", "nash_mtl", "gradvac", "famo", "dwa", "uw", "gradnorm"} <= set(names)


def test_gramians_are_accumulated_in_float64():
    """A float32 Gramian of near-opposite gradients is indefinite (wᵀGw < 0 at MGDA's answer)
    and MGDA's "no conflict" then fails by ~1e-5 relative; accumulated in float64 it holds."""
    gen = torch.Generator().manual_seed(1)
    base = torch.randn(40, generator=gen, dtype=torch.float64)
    signs = torch.tensor([(-1.0) ** i for i in range(8)], dtype=torch.float64)[:, None]
    jac = (signs * base + 1e-4 * torch.randn(8, 40, generator=gen, dtype=torch.float64)).float()
    exact = jac.double() @ jac.double().T
    assert gramian(jac).dtype == torch.float64 and torch.equal(gramian(jac), exact)
    from mtl_platform.gradients import combine

    chunk, combine._CHUNK_ELEMENTS = combine._CHUNK_ELEMENTS, 8 * 7    # 7 columns a chunk: 40 = 5·7 + 5
    try:
        assert torch.allclose(gramian(jac), exact, rtol=1e-15, atol=0)
    finally:
        combine._CHUNK_ELEMENTS = chunk
    w, _ = call_weighting(MGDA([f"t{i}" for i in range(8)]), torch.ones(8), jac)
    assert (exact @ w.double()).min() >= -1e-12 * exact.diagonal().max()


def test_imtl_with_no_common_projection_gives_a_zero_update_not_noise_over_zero():
    """Exactly opposite pairs: 1 is orthogonal to the range of K; rounding noise divided by a
    cancelled Σ(z/n) made weights of 1e38 and an infinite float32 update."""
    base = torch.randn(40, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    jac = torch.stack([base, -base, base, -base, base, -base]).float()
    w, update = call_weighting(IMTL(list("abcdef")), torch.ones(6), jac)
    assert torch.isfinite(w).all() and torch.equal(update, torch.zeros_like(update))


class Line(nn.Module):
    def __init__(self):
        super().__init__()
        self.shared = nn.Linear(3, 1, bias=False)

    def shared_parameters(self):
        return list(self.shared.parameters())


def test_diagnostics_report_the_true_cosine_of_tiny_gradients():
    """The cosine divided by max(‖g_i‖‖g_j‖, 1e-12): gradients of norm 1e-7 came out 100 times
    too small; a zero gradient must read 0, not NaN."""
    engine = GradientEngine(Line(), Equilibrium(["a", "b", "c"]), ["a", "b", "c"])
    jac = torch.tensor([[1e-7, 0.0, 0.0], [0.6e-7, 0.8e-7, 0.0], [0.0, 0.0, 0.0]])
    engine.record(torch.ones(3), gramian(jac))
    row = engine.pop_diagnostics()[0]
    assert abs(row["cos"]["a|b"] - 0.6) < 1e-6
    assert row["cos"]["a|c"] == 0.0 and row["cos"]["b|c"] == 0.0


def test_uw_weight_of_a_long_solved_task_stays_finite():
    """s_t falls without bound while L_t = 0; e^{−s} overflowed float32 at s < −88.7."""
    uw = UW(["a", "b"])
    with torch.no_grad():
        uw.log_var.fill_(-100.0)
    w = uw.respond(torch.tensor([0.0, 1.0]))
    assert torch.isfinite(w).all() and w[0] > 1e38
    assert torch.isfinite((w * torch.tensor([0.0, 1e-30])).sum())


def test_native_gramian_dtype_is_the_plain_product_and_the_config_reaches_the_engine(write_config):
    from mtl_platform import session
    from mtl_platform.errors import UserError

    jac = torch.randn(3, 50, generator=torch.Generator().manual_seed(2))
    assert torch.equal(gramian(jac, "native"), jac @ jac.T) and gramian(jac, "native").dtype == torch.float32
    seen = []

    class Spy(Equilibrium):
        def weights(self, losses, gram=None, **computed):
            seen.append(gram.dtype)
            return super().weights(losses, gram=gram, **computed)

    for precision, dtype in (("float64", torch.float64), ("native", torch.float32)):
        engine = GradientEngine(Line(), Spy(["a", "b"]), ["a", "b"], gramian_dtype=precision)
        out = engine.model.shared(torch.randn(4, 3))
        engine.backward({"a": out.pow(2).mean(), "b": out.mean()})
        assert seen[-1] == dtype
    try:
        GradientEngine(Line(), Spy(["a", "b"]), ["a", "b"], gramian_dtype="half")
    except UserError as err:
        assert "gradients.gramian_dtype" in str(err)
    else:
        raise AssertionError("an unknown gramian_dtype was accepted")
    results = session.train(write_config({"gradients": {"gramian_dtype": "native"}, "weighting": "pcgrad",
                                          "train.epochs": 1}), progress=False, echo=lambda *a, **k: None)
    import yaml

    resolved = yaml.safe_load((Path(results["run_dir"]) / "config.yaml").read_text())
    assert resolved["gradients"]["gramian_dtype"] == "native"
