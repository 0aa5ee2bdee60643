"""DSelect-k (Hazimeh et al., NeurIPS 2021): the smooth step, a saturated gate selects exactly k
experts."""
import pytest
import torch

from mtl_platform_plugins.architectures.dselect_k import DSelectK, smooth_step

from moe_cases import build

pytestmark = pytest.mark.usefixtures("one_thread")


def test_smooth_step():
    g = 2.0
    t = torch.tensor([-5.0, -1.0, 0.0, 1.0, 5.0], requires_grad=True)
    s = smooth_step(t, g)
    assert s.tolist() == [0.0, 0.0, 0.5, 1.0, 1.0]
    s.sum().backward()
    assert t.grad[[0, 1, 3, 4]].abs().max() < 1e-6 and t.grad[2] > 0  # C¹: zero slope at the ends


@pytest.mark.parametrize("n,k", [(4, 2), (5, 3), (8, 4), (4, 1)])
def test_dselect_k_saturated_gate_selects_exactly_k_experts(n, k):
    torch.manual_seed(8)
    gamma = 0.5
    model, tasks, in_shape = build(DSelectK, {"num_experts": n, "k": k, "gamma": gamma}, 2)
    x = torch.randn(6, *in_shape)
    model(x)
    assert all((w > 0).all() for w in model.gate_weights.values())  # initialised inside the transition region
    with torch.no_grad():
        for j, t in enumerate(tasks):
            gate = model.task_gates[t]["0"]
            gate.selectors.weight.zero_()
            codes = [(j + i) % n for i in range(k)]  # k distinct experts per task
            bits = torch.tensor([[(c >> b) & 1 for b in range(gate.bits)] for c in codes], dtype=torch.float)
            gate.selectors.bias.copy_(((2 * bits - 1) * gamma).flatten())  # |z| = γ > γ/2: saturated
    out = model(x)
    for j, t in enumerate(tasks):
        w = model.gate_weights[f"{t}@0"]
        assert ((w > 0).sum(-1) == k).all()
        assert set(w[0].nonzero().flatten().tolist()) == {(j + i) % n for i in range(k)}
        torch.testing.assert_close(w.sum(-1), torch.ones(6))
        feats = torch.stack([e(x) for e in model.shared_experts], 1)
        torch.testing.assert_close(out[t], model.heads[t]((w[:, :, None] * feats).sum(1)))
