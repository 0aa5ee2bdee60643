"""What the LibMTL staples RLW, GradNorm, GradVac, GradDrop, FAMO and DB-MTL share: their
registration and declared contract, finite answers of the right form over Jacobian families,
no host round trips, identical task gradients. Each one's own tests are in test_<name>.py."""
import pytest
import torch

from mtl_platform import registry
from mtl_platform.contracts import Needs
from mtl_platform.gradients.combine import call_weighting, form, needed
from mtl_platform_plugins.weightings.db_mtl import DBMTL
from mtl_platform_plugins.weightings.famo import FAMO
from mtl_platform_plugins.weightings.graddrop import GradDrop
from mtl_platform_plugins.weightings.gradnorm import GradNorm
from mtl_platform_plugins.weightings.gradvac import GradVac
from mtl_platform_plugins.weightings.rlw import RLW

from staple_weighting_cases import D, jacobian, tasks

NAMES = ["rlw", "gradnorm", "gradvac", "graddrop", "famo", "db_mtl"]
CLASSES = {"rlw": RLW, "gradnorm": GradNorm, "gradvac": GradVac, "graddrop": GradDrop,
           "famo": FAMO, "db_mtl": DBMTL}


def test_all_six_are_registered_with_their_declared_contract():
    reg, _ = registry.load()
    found = {c.name: c.cls for c in reg.components("weighting")}
    for name, cls in CLASSES.items():
        assert found[name] is cls
    assert (RLW.needs, RLW.scales_heads) == (Needs.LOSSES, True)
    assert (GradNorm.needs, GradNorm.scales_heads) == (Needs.GRAMIAN, True)
    assert (FAMO.needs, FAMO.scales_heads) == (Needs.LOSSES, True)
    assert (GradVac.needs, GradVac.scales_heads) == (Needs.GRAMIAN, False)
    assert (GradDrop.needs, GradDrop.scales_heads) == (Needs.JACOBIAN, False)
    assert (DBMTL.needs, DBMTL.scales_heads, DBMTL.mode) == (Needs.JACOBIAN, False, "param")
    for cls in CLASSES.values():
        assert cls.__doc__.strip().splitlines()[0].strip()


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("kind", ["random", "near_parallel", "near_opposite", "scaled"])
def test_finite_answers_of_the_right_form_over_jacobian_families(name, kind):
    gen = torch.Generator().manual_seed(100 * NAMES.index(name) + len(kind))
    torch.manual_seed(1)
    for m in range(2, 11):
        p = 20 + 3 * m
        w = CLASSES[name](tasks(m))
        expected = {"graddrop": "vector", "db_mtl": "vector"}.get(name, "weights")
        for _ in range(3):  # several steps, so EMAs and recorded state are exercised
            jac = jacobian(kind, m, p, gen)
            losses = torch.rand(m, generator=gen, dtype=D) + 0.1
            out, update = call_weighting(w, losses, jac)
            assert form(out, m, p, 1) == expected, (name, m)
            assert torch.isfinite(out).all() and torch.isfinite(update).all(), (name, kind, m)
            assert update.shape == (p,)
            if name == "gradnorm":
                aux = w.aux_loss(losses, gram=jac @ jac.T)
                aux.backward()
                assert torch.isfinite(aux) and torch.isfinite(w.task_weights.grad).all()
                w.task_weights.grad = None
            if name == "famo":
                w.after_step(lambda: {t: l for t, l in zip(tasks(m), 0.9 * losses)})
                assert torch.isfinite(w.logits).all()


@pytest.mark.parametrize("name, per_block", [(n, False) for n in NAMES] + [("gradvac", True)])
def test_no_host_round_trips(name, per_block):
    """On the meta device any .item(), float(tensor) or Python branch on a tensor value raises:
    weights, aux_loss and after_step run there, so they never read a value back."""
    m, p, sizes = 4, 30, [10, 20]
    kw = {"per_block": True} if per_block else {}
    w = CLASSES[name](tasks(m), **kw).to("meta")
    jac, losses = torch.empty(m, p, device="meta"), torch.empty(m, device="meta")
    computed = needed(w.needs, jac, sizes)
    for _ in range(2):
        out = w.weights(losses, **computed)
        w.aux_loss(losses, **computed)
        w.after_step(lambda: {t: torch.empty((), device="meta") for t in tasks(m)})
    assert out.device.type == "meta"
    assert out.shape == {"graddrop": (p,), "db_mtl": (p,)}.get(name, (len(sizes), m) if per_block else (m,))


@pytest.mark.parametrize("name, factor", [("rlw", "m"), ("gradnorm", "m"), ("gradvac", "m"),
                                          ("graddrop", "m"), ("famo", "1"), ("db_mtl", "m")])
def test_identical_task_gradients(name, factor):
    """RLW, GradNorm, GradVac, GradDrop: m·g. FAMO: its weights sum to 1, so 1·g.
    DB-MTL: m·ĝ with ĝ = (1−β^k)·g/(L+ε) the EMA of the common log-gradient (here L = 1)."""
    torch.manual_seed(0)
    m, p = 4, 30
    g = torch.randn(p, dtype=D)
    jac = g.expand(m, p).clone()
    w = CLASSES[name](tasks(m))
    for k in range(1, 6):
        _, update = call_weighting(w, torch.ones(m, dtype=D), jac)
        scale = m if factor == "m" else 1
        if name == "db_mtl":
            scale = m * (1 - 0.9 ** k) / (1 + 1e-8)
        assert torch.allclose(update, scale * g, rtol=1e-9, atol=1e-12), (name, k)
