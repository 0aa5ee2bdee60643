"""gradients/perturb.py: exact restore in place, frozen normalisation statistics, directions."""
import pytest
import torch
from torch import nn

from mtl_platform.gradients.perturb import (EPS, Snapshot, direction, frozen_running_stats, gradient_of,
                                            joint_norm)


def test_shifted_moves_then_restores_the_same_tensors_bit_for_bit_also_on_error():
    torch.manual_seed(0)
    net = nn.Linear(4, 3)
    params = list(net.parameters())
    before = [p.detach().clone() for p in params]
    ids = [p.data_ptr() for p in params]
    snap = Snapshot(params)
    deltas = [torch.randn_like(p) * 1e-3 for p in params]
    with snap.shifted([deltas[0], None]):
        assert torch.equal(net.weight.detach(), before[0] + deltas[0])
        assert torch.equal(net.bias.detach(), before[1])
    assert all(torch.equal(p, b) for p, b in zip(params, before))
    with pytest.raises(RuntimeError), snap.shifted(deltas):
        raise RuntimeError("a failing perturbed pass")
    assert all(torch.equal(p, b) for p, b in zip(params, before))
    assert [p.data_ptr() for p in params] == ids and all(p is q for p, q in zip(params, net.parameters()))


@pytest.mark.parametrize("norm", [nn.BatchNorm1d(3), nn.BatchNorm1d(3, momentum=None),
                                  nn.InstanceNorm1d(3, track_running_stats=True)])
def test_frozen_running_stats_leave_every_buffer_unchanged_and_normalise_with_the_batch(norm):
    torch.manual_seed(0)
    x = torch.randn(8, 3, 5) if isinstance(norm, nn.InstanceNorm1d) else torch.randn(8, 3)
    norm.train()
    norm(x)  # one ordinary pass: the statistics move
    buffers = {k: v.clone() for k, v in norm.named_buffers()}
    expected = norm(x * 2.0)
    buffers_after = {k: v.clone() for k, v in norm.named_buffers()}
    assert any(not torch.equal(buffers[k], buffers_after[k]) for k in buffers)  # ordinary passes update
    with frozen_running_stats(norm):
        out = norm(x * 2.0)
    assert torch.equal(out, expected)  # still the batch's statistics in training mode
    assert all(torch.equal(v, buffers_after[k]) for k, v in norm.named_buffers())


def test_direction_and_norms():
    v = torch.tensor([3.0, 4.0], dtype=torch.float64)
    assert torch.allclose(direction(v), torch.tensor([0.6, 0.8], dtype=torch.float64))
    assert torch.equal(direction(torch.zeros(3)), torch.zeros(3))  # 0 / (0 + 1e-12)
    assert EPS == 1e-12
    assert torch.allclose(joint_norm([torch.tensor([3.0]), torch.tensor([[4.0, 12.0]])]), torch.tensor(13.0))


def test_gradient_of_gives_zeros_where_the_loss_does_not_reach():
    a, b = nn.Parameter(torch.tensor([2.0])), nn.Parameter(torch.tensor([1.0, 1.0]))
    assert torch.equal(gradient_of((a ** 2).sum(), [a, b]), torch.tensor([4.0, 0.0, 0.0]))
