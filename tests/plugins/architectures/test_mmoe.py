"""MMoE (Ma et al., KDD 2018): the paper's mixture by hand, one expert equals HPS with its weights."""
import pytest
import torch

from mtl_platform_plugins.architectures.hps import HPS
from mtl_platform_plugins.architectures.mmoe import MMoE

from moe_cases import ENCODERS, build, heads_for

pytestmark = pytest.mark.usefixtures("one_thread")


def test_mmoe_is_the_papers_mixture():
    torch.manual_seed(2)
    model, tasks, in_shape = build(MMoE, {"num_experts": 3}, 2)
    x = torch.randn(5, *in_shape)
    out = model(x)
    experts = model.shared_experts
    feats = torch.stack([e(x) for e in experts], 1)
    h0 = experts[0].stages[0](x)
    for t in tasks:
        g = torch.softmax(h0 @ model.task_gates[t]["0"].linear.weight.T, -1)
        torch.testing.assert_close(out[t], model.heads[t]((g[:, :, None] * feats).sum(1)))


@pytest.mark.parametrize("enc", ["mlp", "conv"])
def test_mmoe_with_one_expert_equals_hps_with_its_weights(enc):
    torch.manual_seed(3)
    model, tasks, in_shape = build(MMoE, {"num_experts": 1}, 3, enc)
    factory, _, width = ENCODERS[enc]
    hps = HPS(tasks, factory, heads_for(width))
    hps.encoder.load_state_dict(model.shared_experts[0].state_dict())
    hps.heads.load_state_dict(model.heads.state_dict())
    x = torch.randn(6, *in_shape)
    got, want = model(x), hps(x)
    for t in tasks:
        torch.testing.assert_close(got[t], want[t])
