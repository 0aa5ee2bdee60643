"""CoNAL's conflict rule on crafted per-module gradients (thesis Eq. 5.2–5.3), and CoNAL-Pro's
(§5.2.4), the same rule with ``notice: last``."""
import pytest
import torch

from mtl_platform.errors import UserError
from mtl_platform.gradients.combine import call_weighting
from mtl_platform_plugins.weightings.conal_conflict import ConalConflict
from mtl_platform_plugins.weightings.conal_pro_conflict import ConalProConflict

from hard_jacobians import DTYPES, FAMILIES, hard_jacobian


def blocks_jacobian(per_block):
    """Stack per-block task gradients [(m, n_b), ...] into one (m, Σ n_b) Jacobian."""
    return torch.cat(per_block, dim=1), [b.shape[1] for b in per_block]


def test_first_conflicting_module_and_all_deeper_get_zero_shallower_get_the_sum():
    agree = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.5, 2.0]])    # pairwise cosines ≥ 0
    conflict = torch.tensor([[1.0, 0.0], [-1.0, 0.1], [0.0, 1.0]])  # tasks 0 and 1 conflict
    later_agree = torch.tensor([[2.0, 1.0], [1.0, 1.0], [1.0, 0.5]])
    jac, sizes = blocks_jacobian([agree, agree * 3, conflict, later_agree])
    answer, combined = call_weighting(ConalConflict(["a", "b", "c"]), torch.ones(3), jac, sizes)
    assert torch.equal(answer, torch.tensor([[1.0] * 3, [1.0] * 3, [0.0] * 3, [0.0] * 3]))
    expected = torch.cat([agree.sum(0), (agree * 3).sum(0), torch.zeros(2), torch.zeros(2)])
    assert torch.equal(combined, expected)


def test_no_conflict_is_the_plain_sum_and_a_conflict_in_the_first_module_freezes_all():
    torch.manual_seed(0)
    positive = [torch.rand(4, 5) for _ in range(3)]  # non-negative entries: no negative cosine
    jac, sizes = blocks_jacobian(positive)
    _, combined = call_weighting(ConalConflict(["t0", "t1", "t2", "t3"]), torch.ones(4), jac, sizes)
    assert torch.allclose(combined, jac.sum(0))
    first = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    jac, sizes = blocks_jacobian([first, *positive])
    answer, combined = call_weighting(ConalConflict(["t0", "t1", "t2", "t3"]), torch.ones(4), jac, sizes)
    assert not answer.any() and not combined.any()


def test_orthogonal_or_zero_gradients_are_not_conflicts():
    jac, sizes = blocks_jacobian([torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([[0.0, 0.0], [1.0, 1.0]])])
    answer, _ = call_weighting(ConalConflict(["a", "b"]), torch.ones(2), jac, sizes)
    assert torch.equal(answer, torch.ones(2, 2))


def test_notice_last_watches_only_the_last_block():
    conflict = torch.tensor([[1.0, 0.0], [-1.0, 0.1], [0.0, 1.0]])  # tasks 0 and 1 conflict
    agree = torch.tensor([[2.0, 1.0], [1.0, 1.0], [1.0, 0.5]])
    tasks = ["a", "b", "c"]
    jac, sizes = blocks_jacobian([agree, conflict, agree])           # a conflict before the last block
    answer, combined = call_weighting(ConalConflict(tasks, notice="last"), torch.ones(3), jac, sizes)
    assert torch.equal(answer, torch.ones(3, 3)) and torch.equal(combined, jac.sum(0))
    jac, sizes = blocks_jacobian([agree, conflict, conflict])        # and in the last one: it alone is zeroed
    answer, _ = call_weighting(ConalConflict(tasks, notice="last"), torch.ones(3), jac, sizes)
    assert torch.equal(answer, torch.tensor([[1.0] * 3, [1.0] * 3, [0.0] * 3]))
    answer, _ = call_weighting(ConalConflict(tasks), torch.ones(3), jac, sizes)   # notice: all (CoNAL)
    assert torch.equal(answer, torch.tensor([[1.0] * 3, [0.0] * 3, [0.0] * 3]))


@pytest.mark.parametrize("kind", FAMILIES)
def test_conal_pro_conflict_is_conal_conflict_with_notice_last_bit_for_bit(kind):
    assert ConalProConflict.declared_params() == () and ConalProConflict.notice == "last"
    for dtype in DTYPES:
        for m in (2, 5, 10):
            tasks = [f"t{i}" for i in range(m)]
            for seed in range(3):
                jac = hard_jacobian(kind, m, dtype, seed)
                for sizes in ([40], [20, 20], [5, 10, 25], [10] * 4):
                    if seed:  # flip the sign of one block of one task: conflicts in some blocks only
                        b = seed % len(sizes)
                        jac = jac.clone()
                        jac[seed % m, sum(sizes[:b]):sum(sizes[:b + 1])] *= -1
                    preset, _ = call_weighting(ConalProConflict(tasks), torch.ones(m, dtype=dtype), jac, sizes)
                    spelled, _ = call_weighting(ConalConflict(tasks, notice="last"), torch.ones(m, dtype=dtype),
                                                jac, sizes)
                    assert torch.equal(preset, spelled) and preset.dtype == spelled.dtype, (kind, m, dtype, sizes)
                    # CoNAL-Pro's rule written out: only the last block, zeroed on a negative cosine there
                    last = jac[:, -sizes[-1]:].double()
                    gram = last @ last.T
                    conflict = ((gram < 0) & ~torch.eye(m, dtype=torch.bool)).any()
                    want = torch.ones(len(sizes), m, dtype=dtype)
                    want[-1] = 0.0 if conflict else 1.0
                    assert torch.equal(preset, want), (kind, m, dtype, sizes)


def test_conal_pro_conflict_takes_no_notice_key(builtin_registry):
    from mtl_platform.config import resolve

    base = {"domain": "multi_mnist", "architecture": "hps", "weighting": {"name": "conal_pro_conflict",
                                                                          "notice": "all"}}
    with pytest.raises(UserError, match=r"weighting\.notice: unknown key"):
        resolve(base, builtin_registry)
