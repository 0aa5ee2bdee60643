"""The LibMTL staples RLW, GradNorm, GradVac, GradDrop, FAMO, DB-MTL: hand-computed cases,
properties over families of Jacobians, state round trips and the behaviour each paper claims."""
import math

import pytest
import torch

from mtl_platform import registry
from mtl_platform.contracts import Needs
from mtl_platform.errors import UserError
from mtl_platform.gradients.combine import call_weighting, form, needed
from mtl_platform_plugins.weightings.db_mtl import DBMTL
from mtl_platform_plugins.weightings.famo import FAMO
from mtl_platform_plugins.weightings.graddrop import GradDrop
from mtl_platform_plugins.weightings.gradnorm import GradNorm
from mtl_platform_plugins.weightings.gradvac import GradVac
from mtl_platform_plugins.weightings.rlw import RLW

D = torch.float64
NAMES = ["rlw", "gradnorm", "gradvac", "graddrop", "famo", "db_mtl"]
CLASSES = {"rlw": RLW, "gradnorm": GradNorm, "gradvac": GradVac, "graddrop": GradDrop,
           "famo": FAMO, "db_mtl": DBMTL}


def tasks(m):
    return [f"t{i}" for i in range(m)]


def cos(a, b):
    return (a @ b / (a.norm() * b.norm())).item()


def jacobian(kind, m, p, gen):
    """One member of a family of (m × P) float64 Jacobians."""
    if kind == "random":
        return torch.randn(m, p, generator=gen, dtype=D)
    base = torch.randn(p, generator=gen, dtype=D)
    noise = 1e-4 * torch.randn(m, p, generator=gen, dtype=D)
    if kind == "near_parallel":
        return base + noise
    if kind == "near_opposite":
        signs = torch.tensor([(-1.0) ** i for i in range(m)], dtype=D)
        return signs[:, None] * base + noise
    if kind == "scaled":
        scale = 10 ** (6 * torch.rand(m, 1, generator=gen, dtype=D) - 3)   # 1e-3 .. 1e3
        return scale * torch.randn(m, p, generator=gen, dtype=D)
    raise ValueError(kind)


# --- registration and shared properties ---------------------------------------------------


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


# --- RLW ----------------------------------------------------------------------------------


@pytest.mark.parametrize("distribution", ["normal", "uniform", "dirichlet", "bernoulli"])
def test_rlw_weights_sum_to_m_with_mean_one(distribution):
    torch.manual_seed(0)
    m, n = 3, 20000
    rlw = RLW(tasks(m), distribution=distribution)
    draws = torch.stack([rlw.weights(torch.ones(m)) for _ in range(n)])
    assert torch.allclose(draws.sum(1), torch.full((n,), float(m)), atol=1e-5)
    assert (draws > 0).all()                                      # softmax / Dirichlet: positive
    assert torch.allclose(draws.mean(0), torch.ones(m), atol=0.03)   # E[w_t] = 1 by symmetry
    assert draws.std(0).min() > 0.01                              # genuinely random


def test_rlw_distributions_have_their_shapes():
    torch.manual_seed(0)
    n = 40000
    # normal, m = 2: w₁ = 2·sigmoid(z₁ − z₂), z₁ − z₂ ~ N(0, 2): P(w₁ > 1.5) = P(N(0,2) > ln 3)
    normal = RLW(tasks(2))
    w = torch.stack([normal.weights(torch.ones(2)) for _ in range(n)])
    expected = 0.5 * math.erfc(math.log(3) / 2)   # 1 − Φ(ln 3 / √2)
    assert abs((w[:, 0] > 1.5).double().mean().item() - expected) < 0.01
    # uniform (softmax of U(0,1)): w₁ ≤ 2e/(e+1) < 1.5 always
    uniform = RLW(tasks(2), distribution="uniform")
    w = torch.stack([uniform.weights(torch.ones(2)) for _ in range(2000)])
    assert w.max() <= 2 * math.e / (math.e + 1) + 1e-6
    # Dirichlet(1,1,1): λ_t ~ Beta(1, 2), E[λ²] = 1/6, so E[w²] = 9/6
    dirichlet = RLW(tasks(3), distribution="dirichlet")
    w = torch.stack([dirichlet.weights(torch.ones(3)) for _ in range(n)])
    assert abs((w ** 2).mean().item() - 1.5) < 0.03
    # bernoulli + softmax: a selected task gets e/(k·e + m − k)
    bern = RLW(tasks(2), distribution="bernoulli")
    w = torch.stack([bern.weights(torch.ones(2)) for _ in range(2000)])
    allowed = torch.tensor([[1.0, 1.0], [2 * math.e / (math.e + 1), 2 / (math.e + 1)],
                            [2 / (math.e + 1), 2 * math.e / (math.e + 1)]])
    assert torch.cdist(w, allowed).min(1).values.max() < 1e-5


def test_rlw_sum_normalisation_and_the_empty_bernoulli_draw():
    torch.manual_seed(0)
    rlw = RLW(tasks(2), distribution="bernoulli", normalise="sum")
    w = torch.stack([rlw.weights(torch.ones(2)) for _ in range(4000)])
    # draws {1,0}→[2,0], {0,1}→[0,2], {1,1} and the empty draw {0,0}→[1,1] (documented)
    is_equal = (w == 1).all(1)
    assert ((w == torch.tensor([2.0, 0.0])).all(1) | (w == torch.tensor([0.0, 2.0])).all(1) | is_equal).all()
    assert abs(is_equal.double().mean().item() - 0.5) < 0.03
    u = RLW(tasks(4), distribution="uniform", normalise="sum")   # CoNAL retraining: u/Σu (× m)
    torch.manual_seed(3)
    expected = torch.rand(4)
    torch.manual_seed(3)
    assert torch.allclose(u.weights(torch.ones(4)), 4 * expected / expected.sum())
    with pytest.raises(UserError, match="non-negative"):
        RLW(tasks(2), distribution="normal", normalise="sum")


def test_rlw_is_reproducible_from_the_global_seed():
    rlw = RLW(tasks(5))
    torch.manual_seed(7)
    a = torch.stack([rlw.weights(torch.ones(5, dtype=D)) for _ in range(5)])
    torch.manual_seed(7)
    b = torch.stack([rlw.weights(torch.ones(5, dtype=D)) for _ in range(5)])
    assert torch.equal(a, b) and a.dtype == D
    assert not torch.allclose(a[0], a[1])


# --- GradNorm -----------------------------------------------------------------------------


def test_gradnorm_aux_gradient_matches_a_hand_computation():
    gn = GradNorm(["a", "b"], alpha=1.5)
    with torch.no_grad():
        gn.task_weights.copy_(torch.tensor([1.0, 0.5]))
    gram = torch.tensor([[1.0, 0.5], [0.5, 9.0]])                  # ‖g‖ = [1, 3]
    gn.weights(torch.tensor([2.0, 4.0]), gram=gram)                # records L(0) = [2, 4]
    aux = gn.aux_loss(torch.tensor([1.0, 3.0]), gram=gram)
    # G = w·‖g‖ = [1, 1.5], Ḡ = 1.25; L̃ = [0.5, 0.75], r = L̃/0.625 = [0.8, 1.2]
    target = [1.25 * 0.8 ** 1.5, 1.25 * 1.2 ** 1.5]                # [0.8944, 1.6432]
    assert aux.item() == pytest.approx(abs(1 - target[0]) + abs(1.5 - target[1]), rel=1e-6)
    aux.backward()
    # ∂/∂w_t = sign(G_t − target_t)·‖g_t‖ (target held constant): [+1·1, −1·3]
    assert torch.allclose(gn.task_weights.grad, torch.tensor([1.0, -3.0]))


def test_gradnorm_is_at_rest_when_norms_and_rates_are_equal():
    gn = GradNorm(tasks(3))
    gram = torch.tensor([[4.0, 1.0, -2.0], [1.0, 4.0, 0.5], [-2.0, 0.5, 4.0]])
    gn.weights(torch.tensor([1.0, 2.0, 3.0]), gram=gram)
    aux = gn.aux_loss(torch.tensor([0.5, 1.0, 1.5]), gram=gram)    # every task at half its L(0)
    aux.backward()
    assert aux.item() == 0.0
    assert torch.equal(gn.task_weights.grad, torch.zeros(3))


def test_gradnorm_weights_are_renormalised_and_the_parameter_kept_in_check():
    gn = GradNorm(tasks(3))
    with torch.no_grad():
        gn.task_weights.copy_(torch.tensor([2.0, -1.0, 4.0]))
    w = gn.weights(torch.ones(3), gram=torch.eye(3))
    assert w.sum().item() == pytest.approx(3.0) and (w > 0).all() and not w.requires_grad
    assert w[0].item() == pytest.approx(1.0)                       # 3·2/6 (the −1 clamped to ~0)
    gn.after_step(lambda: pytest.fail("GradNorm must not re-evaluate the losses"))
    assert gn.task_weights.sum().item() == pytest.approx(3.0) and (gn.task_weights > 0).all()


def test_gradnorm_permutes_with_the_tasks():
    gen = torch.Generator().manual_seed(0)
    jac = jacobian("scaled", 5, 30, gen)
    l0, l1 = torch.rand(5, generator=gen, dtype=D) + 0.5, torch.rand(5, generator=gen, dtype=D) + 0.1
    perm = torch.randperm(5, generator=gen)
    grads = []
    for order in (torch.arange(5), perm):
        gn = GradNorm(tasks(5))
        j = jac[order]
        gn.weights(l0[order], gram=j @ j.T)
        gn.aux_loss(l1[order], gram=j @ j.T).backward()
        grads.append(gn.task_weights.grad)
    assert torch.allclose(grads[1], grads[0][perm], rtol=1e-5)


def test_gradnorm_learns_weights_that_equalise_the_weighted_norms():
    """With equal training rates the target is Ḡ for every task: w_t ∝ 1/‖g_t‖ at rest."""
    gn = GradNorm(tasks(3))
    opt = torch.optim.Adam(gn.parameters(), lr=0.01)
    norms = torch.tensor([1.0, 2.0, 8.0])
    gram = torch.diag(norms ** 2)
    losses = torch.ones(3)
    for _ in range(600):
        opt.zero_grad()
        gn.weights(losses, gram=gram)
        gn.aux_loss(losses, gram=gram).backward()
        opt.step()
        gn.after_step(None)
    w = gn.weights(losses, gram=gram)
    expected = 3 * (1 / norms) / (1 / norms).sum()
    assert torch.allclose(w, expected, rtol=0.05)


def test_gradnorm_state_round_trips():
    gn = GradNorm(tasks(3), alpha=0.5)
    gram = torch.diag(torch.tensor([1.0, 4.0, 9.0]))
    gn.weights(torch.tensor([1.0, 2.0, 3.0]), gram=gram)
    with torch.no_grad():
        gn.task_weights.copy_(torch.tensor([0.5, 1.0, 1.5]))
    fresh = GradNorm(tasks(3), alpha=0.5)
    fresh.load_state_dict(gn.state_dict())
    later = torch.tensor([0.7, 1.0, 2.0])
    assert torch.equal(fresh.initial_losses, torch.tensor([1.0, 2.0, 3.0]))
    assert torch.equal(fresh.aux_loss(later, gram=gram), gn.aux_loss(later, gram=gram))


# --- GradVac ------------------------------------------------------------------------------


def test_gradvac_first_step_on_a_conflict_projects_to_the_zero_target():
    g1, g2 = torch.tensor([1.0, 0.0, 1.0], dtype=D), torch.tensor([-1.0, 2.0, 0.0], dtype=D)
    jac = torch.stack([g1, g2])
    gv = GradVac(["a", "b"], beta=0.01)
    w, update = call_weighting(gv, torch.ones(2, dtype=D), jac)
    # φ̂ = 0: a = −‖g_i‖φ/‖g_j‖ = −g_i·g_j/‖g_j‖², i.e. the conflicting component is removed
    d = (g1 @ g2).item()
    assert torch.allclose(w, torch.tensor([1 - d / (g1 @ g1).item(), 1 - d / (g2 @ g2).item()], dtype=D))
    g1_new, g2_new = g1 + (w[1] - 1) * g2, g2 + (w[0] - 1) * g1
    assert abs(cos(g1_new, g2)) < 1e-12 and abs(cos(g2_new, g1)) < 1e-12   # cos ≥ target 0
    assert torch.allclose(update, g1_new + g2_new)
    phi = cos(g1, g2)
    assert torch.allclose(gv.targets[0], torch.tensor([[0.0, 0.01 * phi], [0.01 * phi, 0.0]], dtype=D))


def test_gradvac_reaches_a_positive_target_cosine_exactly():
    gen = torch.Generator().manual_seed(3)
    jac = torch.randn(2, 40, generator=gen, dtype=D)
    jac[1] *= 50.0                                                  # very different norms
    gv = GradVac(["a", "b"])
    with torch.no_grad():
        gv.targets.fill_(0.6)
    target = gv.targets.new_tensor(0.6).item()                      # 0.6 as the float32 buffer holds it
    w, _ = call_weighting(gv, torch.ones(2, dtype=D), jac)
    assert cos(jac[0], jac[1]) < 0.6
    g1_new, g2_new = jac[0] + (w[1] - 1) * jac[1], jac[1] + (w[0] - 1) * jac[0]
    assert cos(g1_new, jac[1]) == pytest.approx(target, abs=1e-10)
    assert cos(g2_new, jac[0]) == pytest.approx(target, abs=1e-10)
    assert w.min() > 1                                              # both pulled towards the other


def test_gradvac_leaves_agreeing_gradients_alone():
    gen = torch.Generator().manual_seed(0)
    base = torch.rand(30, generator=gen, dtype=D) + 0.5             # all positive: cos > 0 = φ̂
    jac = base + 0.3 * torch.rand(5, 30, generator=gen, dtype=D)
    torch.manual_seed(0)
    w, update = call_weighting(GradVac(tasks(5)), torch.ones(5, dtype=D), jac)
    assert torch.equal(w, torch.ones(5, dtype=D))
    assert torch.allclose(update, jac.sum(0))
    # barely above the target is still above it: no adjustment (cos = 1e-3 > φ̂ = 0; and with
    # φ̂ = 0.5, cos = 0.501 > 0.5)
    for target, c in ((0.0, 1e-3), (0.5, 0.501)):
        pair = torch.tensor([[1.0, 0.0], [c, math.sqrt(1 - c * c)]], dtype=D)
        gv = GradVac(["a", "b"])
        with torch.no_grad():
            gv.targets.fill_(target)
        w, _ = call_weighting(gv, torch.ones(2, dtype=D), pair)
        assert torch.equal(w, torch.ones(2, dtype=D))


def test_gradvac_sequential_adjustment_for_many_tasks():
    """m = 4 with the targets all 0 and every pair conflicting: each g_i' is adjusted in turn,
    and after the last adjustment g_i' is orthogonal to the last task it met (cos = target)."""
    gen = torch.Generator().manual_seed(5)
    m, p = 4, 25
    jac = torch.randn(m, p, generator=gen, dtype=D)
    torch.manual_seed(11)
    w, update = call_weighting(GradVac(tasks(m)), torch.ones(m, dtype=D), jac)
    # replay the documented algorithm in plain Python with the same random order
    torch.manual_seed(11)
    keys = torch.rand(1, m, m) + 2 * torch.eye(m)
    order = keys.argsort(-1)[0, :, : m - 1]
    total = torch.zeros(p, dtype=D)
    for i in range(m):
        gi = jac[i].clone()
        for j in order[i].tolist():
            phi = cos(gi, jac[j])
            if phi < 0:
                gi = gi - phi * gi.norm() / jac[j].norm() * jac[j]
        total += gi
    assert torch.allclose(update, total, rtol=1e-10, atol=1e-12)


def test_gradvac_permutes_with_the_tasks_for_two_tasks():
    jac = torch.tensor([[1.0, 2.0, -1.0], [-3.0, 0.5, 1.0]], dtype=D)
    w1, _ = call_weighting(GradVac(["a", "b"]), torch.ones(2, dtype=D), jac)
    w2, _ = call_weighting(GradVac(["b", "a"]), torch.ones(2, dtype=D), jac.flip(0))
    assert torch.allclose(w2, w1.flip(0))


def test_gradvac_per_block_weights_and_state():
    gen = torch.Generator().manual_seed(2)
    sizes = [10, 7, 13]
    jac = torch.randn(2, sum(sizes), generator=gen, dtype=D)
    gv = GradVac(["a", "b"], per_block=True)
    assert gv.needs is Needs.BLOCK_GRAMIANS and GradVac(["a", "b"]).needs is Needs.GRAMIAN
    out, update = call_weighting(gv, torch.ones(2, dtype=D), jac, block_sizes=sizes)
    assert out.shape == (3, 2) and gv.targets.shape == (3, 2, 2)
    start = 0
    for b, n in enumerate(sizes):   # per block = the global method on that block's slice
        single, _ = call_weighting(GradVac(["a", "b"]), torch.ones(2, dtype=D), jac[:, start:start + n])
        assert torch.allclose(out[b], single)
        assert torch.allclose(update[start:start + n], single @ jac[:, start:start + n])
        start += n
    fresh = GradVac(["a", "b"], per_block=True)
    fresh.load_state_dict(gv.state_dict())                          # lazily sized buffer
    assert torch.equal(fresh.targets, gv.targets)
    jac2 = torch.randn(2, sum(sizes), generator=gen, dtype=D)
    assert torch.equal(call_weighting(fresh, torch.ones(2, dtype=D), jac2, sizes)[0],
                       call_weighting(gv, torch.ones(2, dtype=D), jac2, sizes)[0])


def test_gradvac_is_reproducible_and_round_trips():
    gen = torch.Generator().manual_seed(9)
    jacs = [torch.randn(6, 30, generator=gen, dtype=D) for _ in range(4)]
    a = GradVac(tasks(6), beta=0.2)
    for jac in jacs[:2]:
        call_weighting(a, torch.ones(6, dtype=D), jac)
    b = GradVac(tasks(6), beta=0.2)
    b.load_state_dict(a.state_dict())
    for jac in jacs[2:]:
        torch.manual_seed(4)
        wa, _ = call_weighting(a, torch.ones(6, dtype=D), jac)
        torch.manual_seed(4)
        wb, _ = call_weighting(b, torch.ones(6, dtype=D), jac)
        assert torch.equal(wa, wb)
    assert (a.targets != 0).any()


# --- GradDrop -----------------------------------------------------------------------------


def test_graddrop_keeps_one_sign_per_coordinate():
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    jac = torch.randn(5, 200, generator=gen, dtype=D)
    out, _ = call_weighting(GradDrop(tasks(5)), torch.ones(5, dtype=D), jac)
    positive, negative = jac.clamp_min(0).sum(0), jac.clamp_max(0).sum(0)
    took_positive = out == positive
    assert (took_positive | (out == negative)).all()
    assert took_positive.any() and (~took_positive).any()
    kept = torch.where(took_positive, jac.clamp_min(0), jac.clamp_max(0))
    assert ((kept * out) >= 0).all()                                # every kept part agrees in sign


def test_graddrop_is_the_plain_sum_where_signs_agree():
    gen = torch.Generator().manual_seed(1)
    mags = torch.rand(4, 50, generator=gen, dtype=D) + 0.1
    signs = torch.where(torch.rand(50, generator=gen) < 0.5, -1.0, 1.0).to(D)
    jac = mags * signs
    jac[:, :5] = 0                                                  # Σ|g| = 0: a zero update
    for seed in range(5):
        torch.manual_seed(seed)
        out, _ = call_weighting(GradDrop(tasks(4)), torch.ones(4, dtype=D), jac)
        assert torch.equal(out, jac.sum(0))


def test_graddrop_keeps_the_positive_side_with_probability_purity():
    torch.manual_seed(0)
    n = 20000
    jac = torch.tensor([[3.0], [-1.0]], dtype=D).expand(2, n)       # P = ½(1 + 2/4) = 0.75
    out, _ = call_weighting(GradDrop(["a", "b"]), torch.ones(2, dtype=D), jac)
    assert abs((out == 3.0).double().mean().item() - 0.75) < 0.015
    assert ((out == 3.0) | (out == -1.0)).all()


def test_graddrop_leak_reproducibility_and_permutation_invariance():
    gen = torch.Generator().manual_seed(2)
    jac = torch.randn(6, 40, generator=gen, dtype=D)
    torch.manual_seed(3)
    pure, _ = call_weighting(GradDrop(tasks(6)), torch.ones(6, dtype=D), jac)
    torch.manual_seed(3)
    again, _ = call_weighting(GradDrop(tasks(6)), torch.ones(6, dtype=D), jac)
    assert torch.equal(pure, again)
    torch.manual_seed(3)
    shuffled, _ = call_weighting(GradDrop(tasks(6)), torch.ones(6, dtype=D), jac[torch.randperm(6, generator=gen)])
    assert torch.allclose(shuffled, pure, atol=1e-12)
    torch.manual_seed(3)
    half, _ = call_weighting(GradDrop(tasks(6), leak=0.5), torch.ones(6, dtype=D), jac)
    assert torch.allclose(half, 0.5 * jac.sum(0) + 0.5 * pure)
    full, _ = call_weighting(GradDrop(tasks(6), leak=1.0), torch.ones(6, dtype=D), jac)
    assert torch.allclose(full, jac.sum(0))
    with pytest.raises(UserError):
        GradDrop(tasks(2), leak=1.5)


# --- FAMO ---------------------------------------------------------------------------------


def test_famo_weights_follow_algorithm_1():
    famo = FAMO(["a", "b"])
    # ξ = 0: z = ½; w_t = c·z_t/L_t, c = (Σ z/L)^{-1}: L = [1, 3] → [0.75, 0.25]
    assert torch.allclose(famo.weights(torch.tensor([1.0, 3.0])), torch.tensor([0.75, 0.25]))
    with torch.no_grad():
        famo.logits.copy_(torch.tensor([0.0, math.log(3.0)]))       # z = [¼, ¾]
    w = famo.weights(torch.tensor([1.0, 3.0]))
    assert torch.allclose(w, torch.tensor([0.5, 0.5]))
    shifted = FAMO(["a", "b"], min_losses=[0.5, 0.0])               # D = L − L* = [0.5, 1]
    assert torch.allclose(shifted.weights(torch.tensor([1.0, 1.0])), torch.tensor([2 / 3, 1 / 3]))
    with pytest.raises(UserError, match="one per task"):
        FAMO(["a", "b"], min_losses=[0.0])


def test_famo_update_direction_is_sum_of_weighted_log_gradients():
    gen = torch.Generator().manual_seed(0)
    jac, losses = torch.randn(3, 20, generator=gen, dtype=D), torch.tensor([0.5, 2.0, 4.0], dtype=D)
    famo = FAMO(tasks(3))
    with torch.no_grad():
        famo.logits.copy_(torch.tensor([0.2, -0.1, 0.4]))
    _, update = call_weighting(famo, losses, jac)
    z = torch.softmax(torch.tensor([0.2, -0.1, 0.4], dtype=D), 0)
    c = 1 / (z / losses).sum()
    assert torch.allclose(update, c * (z[:, None] * jac / losses[:, None]).sum(0))


@pytest.mark.parametrize("logit_update", ["sgd", "adam"])
def test_famo_up_weights_the_task_whose_loss_fell_less(logit_update):
    famo = FAMO(["fast", "slow"], w_lr=0.025, gamma=1e-3, logit_update=logit_update)
    famo.weights(torch.tensor([1.0, 1.0]))
    famo.after_step(lambda: {"fast": torch.tensor(0.5), "slow": torch.tensor(0.9)})
    delta = torch.tensor([math.log(2.0), math.log(1 / 0.9)])
    grad = 0.5 * (delta - delta.mean())                             # z ⊙ (δ − zᵀδ), ξ = 0
    if logit_update == "sgd":
        expected = -0.025 * grad
    else:                                                           # Adam's first step: lr·sign
        expected = -0.025 * grad / (grad.abs() + 1e-8)
    assert torch.allclose(famo.logits, expected, atol=1e-7)
    assert famo.logits[1] > 0 > famo.logits[0]
    z = torch.softmax(famo.logits, 0)
    assert z[1] > z[0]
    w = famo.weights(torch.tensor([1.0, 1.0]))
    assert w[1] > w[0]


def test_famo_after_step_needs_weights_first_and_uses_the_closure_once():
    famo = FAMO(["a", "b"])
    famo.after_step(lambda: pytest.fail("no weights were applied, so no re-evaluation"))
    calls = []
    famo.weights(torch.tensor([1.0, 2.0]))
    famo.after_step(lambda: calls.append(1) or {"a": torch.tensor(0.9), "b": torch.tensor(2.0)})
    famo.after_step(lambda: calls.append(1) or {"a": torch.tensor(0.9), "b": torch.tensor(2.0)})
    assert calls == [1]


def test_famo_decay_pulls_logits_to_zero_when_losses_do_not_move():
    famo = FAMO(["a", "b"], gamma=0.5, logit_update="sgd", w_lr=0.1)
    with torch.no_grad():
        famo.logits.copy_(torch.tensor([1.0, -1.0]))
    famo.weights(torch.tensor([1.0, 1.0]))
    famo.after_step(lambda: {"a": torch.tensor(1.0), "b": torch.tensor(1.0)})
    assert torch.allclose(famo.logits, torch.tensor([1.0, -1.0]) * (1 - 0.1 * 0.5))


def test_famo_permutes_with_the_tasks():
    losses = torch.tensor([0.3, 1.0, 2.5, 0.7])
    after = torch.tensor([0.2, 0.95, 2.0, 0.69])
    perm = torch.tensor([2, 0, 3, 1])
    out = []
    for order in (torch.arange(4), perm):
        famo = FAMO(tasks(4))
        for _ in range(3):
            famo.weights(losses[order])
            famo.after_step(lambda o=order: dict(zip(tasks(4), after[o])))
        out.append(famo.weights(losses[order]))
    assert torch.allclose(out[1], out[0][perm], atol=1e-6)


def test_famo_state_round_trips():
    famo = FAMO(tasks(3))
    for step in range(4):
        famo.weights(torch.tensor([1.0, 2.0, 3.0]) / (step + 1))
        famo.after_step(lambda s=step: dict(zip(tasks(3), torch.tensor([0.8, 1.9, 2.0]) / (s + 1))))
    famo.weights(torch.tensor([0.2, 0.4, 0.6]))
    fresh = FAMO(tasks(3))
    fresh.load_state_dict(famo.state_dict())
    for key in ("logits", "exp_avg", "exp_avg_sq", "updates", "losses_before"):
        assert torch.equal(getattr(fresh, key), getattr(famo, key)), key
    fresh.weights(torch.tensor([0.2, 0.4, 0.6]))
    after = dict(zip(tasks(3), torch.tensor([0.1, 0.4, 0.5])))
    famo.after_step(lambda: after)
    fresh.after_step(lambda: after)
    assert torch.equal(fresh.logits, famo.logits)


# --- DB-MTL -------------------------------------------------------------------------------


def db_closed_form(jac, losses):
    log_grads = jac / losses[:, None]
    norms = log_grads.norm(dim=1)
    return (norms.max() / norms)[:, None].mul(log_grads).sum(0)


def test_db_mtl_with_a_constant_jacobian_follows_the_ema_to_the_closed_form():
    gen = torch.Generator().manual_seed(0)
    jac = jacobian("scaled", 4, 30, gen)
    losses = torch.tensor([0.1, 1.0, 5.0, 30.0], dtype=D)
    db = DBMTL(tasks(4), beta=0.9, eps=0.0)
    target = db_closed_form(jac, losses)
    for k in range(1, 61):
        out, _ = call_weighting(db, losses, jac)
        assert torch.allclose(out, (1 - 0.9 ** k) * target, rtol=1e-10), k
    assert torch.allclose(out, target, rtol=2e-3)
    assert db.grad_ema.shape == (4, 30) and db.steps.item() == 60


def test_db_mtl_rate_schedule():
    gen = torch.Generator().manual_seed(1)
    jac, losses = torch.randn(3, 20, generator=gen, dtype=D), torch.tensor([1.0, 2.0, 0.5], dtype=D)
    db = DBMTL(tasks(3), beta=0.9, beta_sigma=0.5, eps=0.0)
    s = 0.0
    for k in range(1, 20):
        rate = 0.9 / k ** 0.5
        s = rate * s + (1 - rate)
        out, _ = call_weighting(db, losses, jac)
        assert torch.allclose(out, s * db_closed_form(jac, losses), rtol=1e-10), k


def test_db_mtl_is_invariant_to_loss_scales_and_task_order():
    """The log transform removes a task's loss scale: L_t → c·L_t (gradient c·g_t) changes nothing."""
    gen = torch.Generator().manual_seed(2)
    jacs = [torch.randn(4, 25, generator=gen, dtype=D) for _ in range(3)]
    losses = [torch.rand(4, generator=gen, dtype=D) + 0.2 for _ in range(3)]
    c = torch.tensor([1e-3, 1.0, 7.0, 1e3], dtype=D)
    perm = torch.tensor([3, 1, 0, 2])
    a, b, p = DBMTL(tasks(4), eps=0.0), DBMTL(tasks(4), eps=0.0), DBMTL(tasks(4), eps=0.0)
    for jac, loss in zip(jacs, losses):
        out_a, _ = call_weighting(a, loss, jac)
        out_b, _ = call_weighting(b, c * loss, c[:, None] * jac)
        out_p, _ = call_weighting(p, loss[perm], jac[perm])
        assert torch.allclose(out_a, out_b, rtol=1e-9)
        assert torch.allclose(out_a, out_p, rtol=1e-9)


def test_db_mtl_state_round_trips_and_restarts_on_a_new_space():
    gen = torch.Generator().manual_seed(3)
    jac, losses = torch.randn(3, 12, generator=gen, dtype=D), torch.tensor([1.0, 0.5, 2.0], dtype=D)
    db = DBMTL(tasks(3))
    for _ in range(3):
        call_weighting(db, losses, jac)
    fresh = DBMTL(tasks(3))
    fresh.load_state_dict(db.state_dict())                          # lazily sized (m, P) buffer
    assert fresh.grad_ema.shape == (3, 12) and fresh.steps.item() == 3
    assert torch.equal(call_weighting(fresh, losses, jac)[0], call_weighting(db, losses, jac)[0])
    other = torch.randn(3, 7, generator=gen, dtype=D)
    out, _ = call_weighting(db, losses, other)                      # another space: a fresh EMA
    assert db.steps.item() == 1
    assert torch.allclose(out, 0.1 * db_closed_form(other, losses + 1e-8), rtol=1e-9)
