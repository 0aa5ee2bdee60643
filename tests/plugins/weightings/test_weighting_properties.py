"""Properties every registered weighting must have — built-in, installed third-party, and the
worked example of docs/writing-a-plugin.md — on families of hard Jacobians (``hard_jacobians``:
a zero row, norms spread 1e-6…1e6, near- and exactly opposite, rank-deficient, identical rows,
all huge, all tiny), m = 2…10, float32 and float64, two calls in a row:

- a finite answer of an allowed shape, in the working dtype, with floating-point state kept
  in that dtype too;
- the properties the weighting declares in ``promises`` (non-negative weights, no conflict
  with any task, MGDA's optimality condition), checked from the Gramian it was given;
- agreeing gradients give a positive multiple of the common gradient;
- each one trains the tiny MultiMNIST run end to end.

The exact-reference checks of the solver weightings are in ``test_weighting_references.py``.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from mtl_platform import registry, session
from mtl_platform.contracts import Needs
from mtl_platform.gradients.combine import call_weighting, form, needed

from conftest import weighting_args
from hard_jacobians import DTYPES, FAMILIES, TASK_COUNTS, hard_jacobian, rounding

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "mtl-plugin-example" / "mtl_plugin_example"
KNOWN_PROMISES = {"nonnegative", "no_conflict", "min_norm"}


def example_plugin():
    """The docs' example plugin, imported from its source folder under a private module name
    (so it neither needs installing nor clashes with an installed copy)."""
    spec = importlib.util.spec_from_file_location("mtl_plugin_example_in_suite", EXAMPLE / "__init__.py",
                                                  submodule_search_locations=[str(EXAMPLE)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def every_weighting():
    """The registry as a user's process sees it (entry points: built-ins and any installed
    third-party plugin), plus the example plugin when it is not installed; and the in-process
    plugins that adds."""
    reg, _ = registry.load()
    if "initial_loss" in reg.names("weighting"):
        return reg, []
    extra = [example_plugin()]
    return registry.load(extra_plugins=extra)[0], extra


REG, EXTRA = every_weighting()
NAMES = REG.names("weighting")


def make(name, m):
    tasks = [f"t{i}" for i in range(m)]
    return REG.get("weighting", name).cls(tasks, **weighting_args(name, tasks))


def call(weighting, jac, losses=None):
    m = jac.shape[0]
    losses = losses if losses is not None else torch.linspace(0.5, 2.0, m, dtype=jac.dtype)
    sizes = [jac.shape[1] // 2, jac.shape[1] - jac.shape[1] // 2]
    if weighting.needs is not Needs.BLOCK_GRAMIANS:
        sizes = [jac.shape[1]]
    answer, combined = call_weighting(weighting, losses, jac, sizes)
    return answer, combined, sizes


def broken_promises(weighting, answer, jac, sizes) -> list[str]:
    """The declared promises that ``answer`` breaks, judged from the Gramian in float64 with an
    allowance for rounding the answer to the Jacobian's dtype."""
    m = jac.shape[0]
    kind = form(answer, m, jac.shape[1], len(sizes), weighting.needs)
    if kind == "vector":
        return []
    j64 = jac.double()
    blocks = [slice(0, jac.shape[1])] if kind == "weights" else [
        slice(sum(sizes[:b]), sum(sizes[:b + 1])) for b in range(len(sizes))]
    rows = answer.double().reshape(len(blocks), m)
    tol = rounding(jac.dtype)
    broken = []
    for b, cols in enumerate(blocks):
        w, gram = rows[b], j64[:, cols] @ j64[:, cols].T
        slack = tol * (gram.abs() @ w.abs()) + 1e-300               # rounding of each (Gw)_i
        if "nonnegative" in weighting.promises and (w < -tol * w.abs().max()).any():
            broken.append(f"nonnegative: min weight {w.min().item():.3g}")
        if "no_conflict" in weighting.promises and ((gram @ w) < -slack).any():
            broken.append(f"no_conflict: min g_i·d {(gram @ w).min().item():.3g}")
        if "min_norm" in weighting.promises:
            quad = w @ gram @ w
            kkt = gram @ w - quad                                     # ≥ 0 for every task at the optimum
            scale = gram.diagonal().max()
            if abs(w.sum() - 1) > tol * m or (w < -tol).any():
                broken.append(f"min_norm: weights {w.tolist()} are not on the simplex")
            elif (kkt < -(slack + 1e-9 * scale)).any():
                broken.append(f"min_norm: KKT gap {kkt.min().item():.3g} (scale {scale.item():.3g})")
    return broken


def working_dtype(weighting, jac, sizes):
    """The dtype of what the engine hands the weighting: its Gramians (float64), or the
    Jacobian, or the losses (the Jacobian's dtype here)."""
    computed = needed(weighting.needs, jac, sizes)
    return next(iter(computed.values())).dtype if computed else jac.dtype


def floating_state(weighting):
    return {name: t.dtype for name, t in [*weighting.named_parameters(), *weighting.named_buffers()]
            if t.is_floating_point()}


@pytest.mark.parametrize("name", NAMES)
def test_promises_are_known_names(name):
    cls = REG.get("weighting", name).cls
    for m in (2, 5):
        unknown = set(make(name, m).promises) - KNOWN_PROMISES
        assert not unknown, f"{cls.__module__}.{cls.__qualname__} promises unknown properties {unknown}"


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("kind", FAMILIES)
def test_hard_jacobians_give_finite_answers_that_keep_their_promises(name, kind):
    for dtype in DTYPES:
        for m in TASK_COUNTS:
            torch.manual_seed(m)
            weighting = make(name, m)
            for call_no in range(2):                       # stateful weightings: a second call on new data
                jac = hard_jacobian(kind, m, dtype, seed=call_no)
                where = f"{name} on {kind}, m={m}, {dtype}, call {call_no + 1}"
                answer, combined, sizes = call(weighting, jac)
                assert form(answer, m, jac.shape[1], len(sizes), weighting.needs) in (
                    "weights", "block_weights", "vector"), where
                assert torch.isfinite(answer).all(), f"{where}: {answer}"
                assert torch.isfinite(combined).all() and combined.shape == (jac.shape[1],), where
                working = working_dtype(weighting, jac, sizes)
                assert answer.dtype == working, f"{where}: answer in {answer.dtype}, working dtype {working}"
                stale = {k: d for k, d in floating_state(weighting).items() if d != working}
                assert not stale, f"{where}: state kept in another precision {stale}"
                broken = broken_promises(weighting, answer, jac, sizes)
                assert not broken, f"{where}: {broken}"


LOSS_FAMILIES = {"zero": 0.0, "tiny": 1e-30, "huge": 1e30, "mixed": None}


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("losses", list(LOSS_FAMILIES))
def test_extreme_losses_give_finite_answers(name, losses):
    """Losses at 0 (a solved task), 1e-30 and 1e30, and all three at once, for loss-based
    weightings (log-losses, loss ratios, 1/L): finite answers that keep their promises."""
    for dtype in DTYPES:
        for m in (2, 3, 6):
            value = LOSS_FAMILIES[losses]
            vector = (torch.full((m,), value, dtype=dtype) if value is not None
                      else torch.tensor([0.0, 1e-30, 1e30, 1.0, 0.0, 2.0][:m], dtype=dtype))
            weighting = make(name, m)
            for call_no in range(2):
                jac = hard_jacobian("random", m, dtype, seed=call_no)
                answer, combined, sizes = call(weighting, jac, losses=vector)
                where = f"{name} with {losses} losses, m={m}, {dtype}, call {call_no + 1}"
                assert torch.isfinite(answer).all() and torch.isfinite(combined).all(), f"{where}: {answer}"
                assert not broken_promises(weighting, answer, jac, sizes), where


@pytest.mark.parametrize("name", NAMES)
def test_agreeing_gradients_give_a_positive_multiple_of_the_common_gradient(name):
    for m in (1, 2, 4):
        torch.manual_seed(0)
        weighting = make(name, m)
        g = torch.randn(24, dtype=torch.float64)
        jac = g.repeat(m, 1)
        answer, combined, _ = call(weighting, jac, losses=torch.ones(m, dtype=torch.float64))
        coef = combined @ g / (g @ g)
        assert coef > 0, (name, m, answer)
        assert torch.allclose(combined, coef * g, atol=1e-8 * g.norm() * max(1.0, coef.abs().item())), name


@pytest.mark.parametrize("name", NAMES)
def test_each_weighting_trains_the_tiny_multi_mnist_run(name, write_config):
    section = {"name": name, **weighting_args(name, ["left", "right"])}
    config = write_config({"weighting": section, "train.epochs": 1})
    results = session.train(config, progress=False, echo=lambda *a, **k: None, extra_plugins=EXTRA)
    assert all(0.0 <= results["mtl"][t]["accuracy"] <= 1.0 for t in ("left", "right"))
