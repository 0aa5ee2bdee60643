"""CoNAL-Pro's conflict rule (Yue, PhD thesis 2023, §5.2.4): CoNAL's rule with ``notice: last``
bit for bit on the hard Jacobian families, no ``notice`` key, only the last block looked at."""
import pytest
import torch

from mtl_platform.errors import UserError
from mtl_platform.gradients.combine import call_weighting
from mtl_platform_plugins.weightings.conal_conflict import ConalConflict
from mtl_platform_plugins.weightings.conal_pro_conflict import ConalProConflict

from hard_jacobians import DTYPES, FAMILIES, hard_jacobian


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



def block_grams(jac, sizes):
    out, start = [], 0
    for n in sizes:
        out.append(jac[:, start:start + n] @ jac[:, start:start + n].T)
        start += n
    return torch.stack(out)


def test_the_conflict_rule_looks_only_at_the_last_block():
    rule = ConalProConflict(["a", "b"])
    g = torch.randn(6, dtype=torch.float64)
    conflicting = torch.stack([g, -g])
    agreeing = torch.stack([g, 2 * g])
    # a conflict in an earlier (trunk) block changes nothing; CoNAL's rule would zero from there on
    jac = torch.cat([conflicting, agreeing], 1)
    assert torch.equal(rule.weights(torch.ones(2), block_grams=block_grams(jac, [6, 6])), torch.ones(2, 2))
    # a conflict in the last block zeroes that block only
    jac = torch.cat([agreeing, conflicting], 1)
    assert torch.equal(rule.weights(torch.ones(2), block_grams=block_grams(jac, [6, 6])),
                       torch.tensor([[1.0, 1.0], [0.0, 0.0]], dtype=torch.float64))
