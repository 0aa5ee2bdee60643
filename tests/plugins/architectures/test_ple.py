"""PLE (Tang et al., RecSys 2020): one level equals CGC, what other tasks reach is classified as
shared."""
import pytest
import torch
from torch import nn

from mtl_platform.contracts import StagedEncoder
from mtl_platform_plugins.architectures.cgc import CGC
from mtl_platform_plugins.architectures.ple import PLE

from moe_cases import build, heads_for

pytestmark = pytest.mark.usefixtures("one_thread")


def one_stage_encoder():
    return StagedEncoder([nn.Sequential(nn.Linear(6, 5), nn.Tanh())], out_shape=(5,), stage_shapes=((5,),))


def test_ple_with_one_level_equals_cgc():
    torch.manual_seed(5)
    tasks = ["a", "b", "c"]
    cgc = CGC(tasks, one_stage_encoder, heads_for(5), num_shared_experts=2, num_task_experts=1)
    ple = PLE(tasks, one_stage_encoder, heads_for(5), num_shared_experts=2, num_task_experts=1)
    ple.load_state_dict(cgc.state_dict())
    x = torch.randn(4, 6)
    got, want = ple(x), cgc(x)
    for t in tasks:
        torch.testing.assert_close(got[t], want[t])


def test_ple_classifies_what_other_tasks_reach_as_shared():
    torch.manual_seed(6)
    model, tasks, _ = build(PLE, {"num_shared_experts": 1, "num_task_experts": 1}, 3)
    shared = {id(p) for p in model.shared_parameters()}
    own = {id(p) for p in model.task_parameters("t0")}
    expert = model.task_experts["t0"][0]
    for s, where in ((0, shared), (1, shared), (2, own)):  # experts below the last level are mixed into the shared path
        assert {id(p) for p in expert.stages[s].parameters()} <= where, s
    gates = model.task_gates["t0"]
    assert {id(p) for p in gates["0"].parameters()} <= shared  # feeds level-1 experts, which are shared
    assert {id(p) for p in gates["1"].parameters()} <= own and {id(p) for p in gates["2"].parameters()} <= own
    assert set(model.shared_gates) == {"0", "1"}
    # three stages → three blocks; level j's shared gate sits in block j
    blocks = model.parameter_blocks()
    assert len(blocks) == 3
    assert all(id(p) in {id(q) for q in blocks[j]} for j in (0, 1) for p in model.shared_gates[str(j)].parameters())
