"""Agr-Sum (Mansilla et al., ICCV 2021): hand-computed vectors at K = 3, both zero rules, both
precisions, the no-conflict property, and its registration."""
import pytest
import torch

from mtl_platform import registry
from mtl_platform.contracts import Needs
from mtl_platform.errors import UserError
from mtl_platform.gradients.combine import call_weighting
from mtl_platform_plugins.weightings.agr_sum import AgrSum, agreement

pytestmark = pytest.mark.usefixtures("one_thread")

TASKS = ["a", "b", "c"]

# columns: all positive, all negative, mixed signs, a zero beside two positives,
# a zero beside opposite signs, all zero, a zero beside two negatives
J = [[1.0, -2.0, 3.0, 0.0, 0.0, 0.0, -1.5],
     [2.0, -0.5, -1.0, 2.0, 4.0, 0.0, 0.0],
     [0.5, -1.0, 2.0, 1.0, -1.0, 0.0, -0.5]]
AGREE_IGNORE = [True, True, False, True, False, True, True]
AGREE_CONFLICT = [True, True, False, False, False, False, False]
SUM_IGNORE = [3.5, -3.5, 0.0, 3.0, 0.0, 0.0, -2.0]
SUM_CONFLICT = [3.5, -3.5, 0.0, 0.0, 0.0, 0.0, 0.0]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_hand_computed_vector_with_zeros_ignored(dtype):
    jac = torch.tensor(J, dtype=dtype)
    assert agreement(jac).tolist() == AGREE_IGNORE
    out = AgrSum(TASKS).weights(torch.ones(3, dtype=dtype), jacobian=jac)
    assert out.dtype == dtype and out.shape == (7,)
    assert torch.equal(out, torch.tensor(SUM_IGNORE, dtype=dtype))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_hand_computed_vector_with_zeros_as_conflicts_the_authors_rule(dtype):
    jac = torch.tensor(J, dtype=dtype)
    assert agreement(jac, "conflict").tolist() == AGREE_CONFLICT
    out = AgrSum(TASKS, zeros="conflict").weights(torch.ones(3, dtype=dtype), jacobian=jac)
    assert torch.equal(out, torch.tensor(SUM_CONFLICT, dtype=dtype))


def test_through_the_engine_semantics_the_answer_is_the_update():
    jac = torch.tensor(J, dtype=torch.float64)
    answer, combined = call_weighting(AgrSum(TASKS), torch.ones(3, dtype=torch.float64), jac)
    assert torch.equal(answer, combined) and combined.tolist() == SUM_IGNORE


@pytest.mark.parametrize("zeros", ["ignore", "conflict"])
def test_the_update_conflicts_with_no_task(zeros):
    """Every kept coordinate has g_k[j]·d[j] >= 0, so g_k·d >= 0 for every task (the promise)."""
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        jac = torch.randn(5, 40, generator=gen, dtype=torch.float64)
        jac[jac.abs() < 0.3] = 0.0                      # exact zeros too
        d = AgrSum(list("abcde"), zeros=zeros).weights(None, jacobian=jac)
        assert ((jac * d).min() >= 0) and (jac @ d >= 0).all()
    assert "no_conflict" in AgrSum.promises


def test_identical_gradients_give_k_times_the_common_gradient():
    g = torch.tensor([0.5, -1.0, 0.0, 2.0], dtype=torch.float64)
    assert torch.equal(AgrSum(TASKS).weights(None, jacobian=g.repeat(3, 1)), 3 * g)


def test_one_task_is_its_own_gradient():
    g = torch.tensor([[0.5, -1.0, 0.0, 2.0]])
    assert torch.equal(AgrSum(["a"], zeros="conflict").weights(None, jacobian=g), torch.tensor([0.5, -1.0, 0.0, 2.0]))


def test_registered_as_a_jacobian_gradient_method():
    cls = registry.load(builtin_only=True)[0].get("weighting", "agr_sum").cls
    assert cls is AgrSum and cls.needs is Needs.JACOBIAN and cls.scales_heads is False


def test_an_unknown_zero_rule_is_refused():
    with pytest.raises(UserError, match="zeros"):
        AgrSum(TASKS, zeros="positive")
