"""The symmetric start of searched supernets (spec thesis.md §3.2: every copy from the same
weights) and its measured effect on CoNAL's derived branch points."""
import importlib.util
from pathlib import Path

import pytest
import torch
from torch import nn

from mtl_platform.stages.symmetric_start import copy_weights
from mtl_platform_plugins.architectures.conal import CoNAL
from mtl_platform_plugins.architectures.conal_pro import ConalPro
from mtl_platform_plugins.architectures.dsmtl_al import DSMTLAL
from mtl_platform_plugins.domains.synthetic_regression.domain import SyntheticRegression

from conftest import make_domain

ROOT = Path(__file__).resolve().parents[3]


def same(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("cls", [CoNAL, DSMTLAL])
def test_every_private_copy_and_head_starts_from_the_same_weights_as_independent_tensors(cls):
    d = make_domain(SyntheticRegression, activations=["bent"] * 3, train_samples=16, hidden=[6, 4])
    torch.manual_seed(0)
    model = cls(d.task_names, d.encoder_factory, d.head_factory)
    heads = list(model.heads.values())
    assert all(same(model.private[t], model.shared) for t in model.tasks)
    assert all(same(h, heads[0]) for h in heads)
    # every path computes the same function at the start, so α gets no gradient yet
    model(torch.randn(8, 200))["task0"].pow(2).mean().backward()
    assert torch.equal(model.alpha["task0"].grad, torch.zeros_like(model.alpha["task0"]))
    model.zero_grad(set_to_none=True)
    # copies, not aliases: a step on task0's loss leaves task1's private encoder and head alone
    before = {k: v.clone() for k, v in model.private["task1"].state_dict().items()}
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    model(torch.randn(8, 200))["task0"].pow(2).mean().backward()
    opt.step()
    assert not same(model.private["task0"], model.shared)
    assert all(torch.equal(v, before[k]) for k, v in model.private["task1"].state_dict().items())
    assert not same(model.heads["task0"], model.heads["task1"])


def test_symmetric_init_false_draws_each_copy_independently():
    d = make_domain(SyntheticRegression, activations=["bent"] * 3, train_samples=16, hidden=[6, 4])
    torch.manual_seed(0)
    model = CoNAL(d.task_names, d.encoder_factory, d.head_factory, search={"symmetric_init": False})
    assert not any(same(model.private[t], model.shared) for t in model.tasks)
    assert not same(model.heads["task0"], model.heads["task1"])


def test_conal_pro_round_copies_the_shared_stages_it_replaces():
    d = make_domain(SyntheticRegression, activations=["bent"] * 3, train_samples=16, hidden=[6, 5, 4])
    torch.manual_seed(0)
    model = ConalPro(d.task_names, d.encoder_factory, d.head_factory, round=2)
    tail = model.shared.stages[model.first:]
    assert len(tail) == 2 and all(same(model.private[t], tail) for t in model.tasks)
    assert all(same(model.heads[t], model.heads["task0"]) for t in model.tasks)


def test_copy_weights_skips_modules_of_another_shape():
    torch.manual_seed(0)
    source, twin, other = nn.Linear(3, 1), nn.Linear(3, 1), nn.Linear(3, 2)
    untouched = other.weight.detach().clone()
    assert copy_weights(source, [source, twin, other]) == 1
    assert same(source, twin) and torch.equal(other.weight, untouched)


def bench_module():
    spec = importlib.util.spec_from_file_location("conal_branching", ROOT / "bench" / "conal_branching.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SMALL = ["domain.train_samples=4000", "architecture.search.epochs=10"]


def test_conal_branches_the_unrelated_task_earlier_than_the_related_ones(tmp_path, one_thread):
    """bench/conal_branching.py's ``unrelated`` scenario (three `bent` tasks, task 2 with its own
    Z) in the sized-up setting at a small budget (4,000 samples, 10 search epochs): over three
    seeds task 2 branches below both related tasks, which share the first stage, every decision
    above the noise threshold. Measured (docs/conal.md): 5 of 5 seeds there, and with
    independently drawn copies every task separates instead; at the sized-up study's own
    budget (20,000 samples, 30 epochs) all three tasks share the whole encoder."""
    bench = bench_module()
    for seed in range(3):
        cfg = bench.override(bench.config(seed, str(tmp_path / "runs")), SMALL)
        derived = bench.search(cfg, tmp_path / f"c{seed}.yaml")
        p = derived["branch_points"]
        assert p["task2"] < min(p["task0"], p["task1"]), (seed, p, derived["alpha"])
        assert p["task0"] > 1 and p["task1"] > 1  # the related tasks share at least the first stage
        assert not any(m["within_noise"] for m in derived["margins"].values()), derived["margins"]
