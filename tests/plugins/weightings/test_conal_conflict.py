"""CoNAL's conflict rule on crafted per-module gradients (thesis Eq. 5.2–5.3), with ``notice: all``
and ``notice: last``. CoNAL-Pro's preset of it is in ``test_conal_pro_conflict.py``."""
import torch

from mtl_platform.gradients.combine import call_weighting
from mtl_platform_plugins.weightings.conal_conflict import ConalConflict


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
