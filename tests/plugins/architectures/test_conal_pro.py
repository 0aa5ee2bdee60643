"""CoNAL-Pro (thesis §5.2.4, spec thesis.md §4): the round supernets, the one-module conflict
rule in the engine (the rule alone: test_conal_pro_conflict.py), the assembly of the rounds' decisions into a tree, and the staged run with resume."""
import json

import pytest
import torch

from mtl_platform import registry, session
from mtl_platform.checkpoint import load
from mtl_platform.config import resolve, read_yaml
from mtl_platform.contracts.stage import StageContext
from mtl_platform.experiment import build_domain
from mtl_platform.gradients import GradientEngine
from mtl_platform_plugins.architectures.conal_pro import ConalPro, SearchRound, assemble, round_epochs
from mtl_platform_plugins.architectures.tree import Tree
from mtl_platform_plugins.domains.synthetic_regression.domain import SyntheticRegression
from mtl_platform_plugins.weightings.conal_pro_conflict import ConalProConflict

from conftest import InterruptAt, config_writer, make_domain, run_dirs

quiet = {"progress": False, "echo": lambda *a, **k: None}

SYNTH = {  # P = 3 (two hidden stages): rounds 1 and 2; with seed 2, round 1 leaves two tasks for round 2
    "domain": {"name": "synthetic_regression", "activations": ["sinc", "sinc", "sinc"], "unrelated": [2],
               "train_samples": 96, "val_samples": 32, "test_samples": 32, "hidden": [8, 8],
               "batch_size": 16},
    "architecture": {"name": "conal_pro", "search": {"epochs": 2, "alpha_lr": 0.05}},
    "optimizer": {"name": "adam", "lr": 1.0e-3},
    "train": {"epochs": 2, "seed": 2, "device": "cpu", "progress": False, "log_every": 2},
}


@pytest.fixture
def synth_config(tmp_path):
    return config_writer(SYNTH, tmp_path / "conal_pro.yaml", tmp_path / "runs")


def domain_of(m=3, hidden=(8, 8, 8)):
    d = make_domain(SyntheticRegression, activations=["sinc"] * m, train_samples=16, hidden=list(hidden))
    d.prepare()
    return d


def force(model, shared):
    """One-hot α: the tasks in ``shared`` take path (a), the others path (b)."""
    with torch.no_grad():
        for t in model.tasks:
            model.alpha[t].copy_(torch.tensor([-1e4, 1e4] if t in shared else [1e4, -1e4]))


@pytest.mark.parametrize("k", [1, 2, 3])
def test_a_rounds_supernet_at_forced_alpha_is_the_tree_of_its_two_paths_with_the_same_weights(k):
    d = domain_of()  # P = 4
    tasks = ["task0", "task1", "task2"]
    torch.manual_seed(0)
    model = ConalPro(tasks, d.encoder_factory, d.head_factory, round=k)
    shared = ["task0", "task2"]
    force(model, shared)
    first = 3 - k  # stage P−k (0-based): where path (b) leaves the shared encoder
    groups = [[tasks] if q < first else [shared, ["task1"]] for q in range(3)]
    tree = Tree(tasks, d.encoder_factory, d.head_factory, groups=groups)
    for q, level in enumerate(tree.groups):
        for i, g in enumerate(level):
            source = model.private[g[0]][q - first] if g == ["task1"] else model.shared.stages[q]
            tree.blocks[q][i].load_state_dict(source.state_dict())
    tree.heads.load_state_dict(model.heads.state_dict())
    x = torch.randn(7, 200)
    out, ref = model(x), tree(x)
    assert all(torch.allclose(out[t], ref[t], atol=1e-6) for t in tasks)
    # the decision: path (a) is branch point P−k+1 (subgroup k), path (b) is P−k
    decision = model.decide()
    assert decision["branch_points"] == {"task0": 5 - k, "task1": 4 - k, "task2": 5 - k}
    assert decision["subgroup"] == shared and decision["round"] == k
    # only the stages from P−k on are held per task (CoNAL holds full encoders)
    assert len(model.private["task1"]) == k
    # parameter blocks: one per trunk stage, then the round's module (stages P−k … P−1) last
    blocks = model.parameter_blocks()
    assert len(blocks) == first + 1
    assert [id(p) for p in blocks[-1]] == [id(p) for s in model.shared.stages[first:] for p in s.parameters()]


def test_alpha_ties_go_to_the_purely_specific_path_and_the_round_must_fit_the_encoder():
    from mtl_platform.errors import UserError

    d = domain_of(hidden=(8, 8))
    model = ConalPro(["task0", "task1"], d.encoder_factory, d.head_factory, round=2)
    assert model.decide()["branch_points"] == {"task0": 1, "task1": 1}  # last round, α = 0: separate networks
    with pytest.raises(UserError, match="architecture.round"):
        ConalPro(["task0"], d.encoder_factory, d.head_factory, round=3)


@pytest.mark.parametrize("sign", [-1.0, 1.0])
def test_in_a_round_the_engine_zeroes_only_the_rounds_module_on_a_conflict(sign, one_thread):
    """Round 2 of P = 4: trunk = stage 1, the round's module = stages 2–3. Identical linear heads
    and losses ±Σŷ make the two tasks' gradients on the module exactly opposite (sign −1)."""
    d = domain_of(m=2)
    tasks = ["task0", "task1"]
    torch.manual_seed(0)
    # independent private stages (the symmetric start would make the two losses cancel on the trunk)
    model = ConalPro(tasks, d.encoder_factory, d.head_factory, round=2, search={"symmetric_init": False})
    model.heads["task1"].load_state_dict(model.heads["task0"].state_dict())
    x = torch.randn(8, 200)

    def losses():
        out = model(x)
        return {"task0": out["task0"].sum(), "task1": sign * out["task1"].sum()}

    trunk = list(model.shared.stages[0].parameters())
    module = model.parameter_blocks()[-1]
    own = [p for t in tasks for p in model.task_parameters(t)]
    values = list(losses().values())
    per_task = [torch.autograd.grad(v, trunk + module + own, allow_unused=True, retain_graph=True) for v in values]
    flat = [torch.cat([g.flatten() for g in grads[:len(trunk)]]) for grads in per_task]
    if sign < 0:
        assert flat[0] @ flat[1] < 0  # the trunk conflicts too: CoNAL's rule would zero it
    engine = GradientEngine(model, ConalProConflict(tasks), tasks)
    model.zero_grad()
    engine.backward(losses())
    summed = [sum(g[i] for g in per_task if g[i] is not None) for i in range(len(trunk + module + own))]
    for p, expect in zip(trunk, summed[:len(trunk)]):
        assert torch.allclose(p.grad, expect, atol=1e-6) and expect.abs().sum() > 0
    for p, expect in zip(module, summed[len(trunk):len(trunk) + len(module)]):
        assert torch.allclose(p.grad, torch.zeros_like(p) if sign < 0 else expect, atol=1e-6)
    for p, expect in zip(own, summed[len(trunk) + len(module):]):
        assert torch.allclose(p.grad, expect, atol=1e-6)


def test_hand_set_alpha_of_every_round_assembles_the_hand_computed_groups():
    d = domain_of(m=5)  # P = 4: rounds 1, 2, 3
    tasks = d.task_names
    chosen = {1: ["task1"], 2: ["task0", "task3"], 3: []}  # path (a) per round
    active, decisions = list(tasks), []
    for k in (1, 2, 3):
        model = ConalPro(active, d.encoder_factory, d.head_factory, round=k)
        force(model, chosen[k])
        decisions.append(model.decide())
        active = [t for t in active if t not in decisions[-1]["subgroup"]]
    assert active == ["task2", "task4"] and list(decisions[2]["branch_points"]) == ["task2", "task4"]
    derived = assemble(tasks, decisions, points=4)
    assert derived["branch_points"] == {"task0": 3, "task1": 4, "task2": 1, "task3": 3, "task4": 1}
    expected = [
        [["task0", "task1", "task3"], ["task2"], ["task4"]],   # stage 1: the trunk; task2, task4 separate
        [["task0", "task1", "task3"], ["task2"], ["task4"]],   # stage 2: still the trunk
        [["task1"], ["task0", "task3"], ["task2"], ["task4"]],  # stage 3: subgroup 2's shared h_S^{P−1}
    ]
    assert derived["architecture"] == {"name": "tree", "groups": expected}
    assert derived["subgroups"] == [{"round": 1, "branch_point": 4, "tasks": ["task1"]},
                                    {"round": 2, "branch_point": 3, "tasks": ["task0", "task3"]}]
    tree = Tree(tasks, d.encoder_factory, d.head_factory, groups=expected)
    assert tree._is_shared(2, 1) and not tree._is_shared(2, 0)  # subgroup-shared module; task1 alone
    assert tree.branch_points()["task2"] == 1 and tree.branch_points()["task4"] == 1


def test_round_epochs_and_the_fixed_stage_list(synth_config, monkeypatch):
    assert round_epochs(10, 5, "round") == [10] * 5
    assert round_epochs(10, 4, "total") == [3, 3, 2, 2]
    assert round_epochs(2, 3, "total") == [1, 1, 1]
    reg, _ = registry.load(builtin_only=True)
    config = resolve(read_yaml(synth_config(**{"architecture.search.budget": "total",
                                               "architecture.search.epochs": 3})), reg)
    domain = build_domain(config, reg)

    def rebuilt(*args, **kwargs):
        raise AssertionError("the stage plan rebuilt the registry or the domain")

    monkeypatch.setattr(registry, "load", rebuilt)  # the plan reads the run's built domain, nothing else
    monkeypatch.setattr(SyntheticRegression, "__init__", rebuilt)
    plan = ConalPro.stage_plan(config, domain=domain, registry=reg)
    assert [s.name for s in plan] == ["round1", "round2", "derive", "retrain"]  # P − 1 = 2 hidden stages
    assert [s.epochs for s in plan[:2]] == [2, 1]
    assert plan[0].rule == {"name": "conal_pro_conflict"}
    config["architecture"]["search"]["conflict_notice"] = False
    assert ConalPro.stage_plan(config, domain=domain, registry=reg)[0].rule == {"name": "ew"}


def test_tasks_assigned_in_round_1_take_no_part_in_round_2(synth_config, tmp_path, one_thread):
    reg, pm = registry.load(builtin_only=True)
    config = resolve(read_yaml(synth_config(**{"architecture.search.epochs": 1})), reg)
    domain = build_domain(config, reg)
    stage_dir = tmp_path / "round2"
    stage_dir.mkdir()
    previous = {"round1": {"round": 1, "subgroup": ["task1"], "branch_points": {"task0": 2, "task1": 3, "task2": 2}}}
    ctx = StageContext(config=config, registry=reg, pm=pm, domain=domain, run_dir=tmp_path, stage_dir=stage_dir,
                       previous=previous, final=False, echo=lambda *a, **k: None)
    results = SearchRound(2, 1, {"name": "conal_pro_conflict"}).run(ctx)
    assert results["active"] == ["task0", "task2"]
    assert set(results["branch_points"]) == {"task0", "task2"} and set(results["branch_points"].values()) <= {1, 2}
    weights = load(stage_dir / "model.pt")
    assert not any("task1" in k for k in weights) and any("task0" in k for k in weights)
    saved = read_yaml(stage_dir / "config.yaml")
    assert saved["domain"]["tasks"] == ["task0", "task2"] and saved["architecture"]["round"] == 2
    assert saved["weighting"]["name"] == "conal_pro_conflict"
    rows = [json.loads(line) for line in (stage_dir / "metrics.jsonl").read_text().splitlines()]
    assert set(rows[-1]["train"]["loss"]) == {"task0", "task2"} and set(rows[-1]["val"]) == {"task0", "task2"}
    assert domain.task_names == ["task0", "task1", "task2"]  # the run's domain is untouched
    # a round with every task assigned finishes at once
    previous["round1"]["subgroup"] = ["task0", "task1", "task2"]
    empty = SearchRound(2, 1, {"name": "conal_pro_conflict"}).run(ctx)
    assert empty["active"] == [] and empty["subgroup"] == [] and empty["epochs_trained"] == 0


def test_conal_pro_run_searches_each_round_assembles_a_tree_and_retrains_it(synth_config, tmp_path, one_thread):
    results = session.train(synth_config(), **quiet)
    (run_dir,) = run_dirs(tmp_path / "runs")
    stages = run_dir / "stages"
    assert sorted(p.name for p in stages.iterdir()) == ["derive", "retrain", "round1", "round2"]
    r1 = json.loads((stages / "round1" / "results.json").read_text())
    r2 = json.loads((stages / "round2" / "results.json").read_text())
    assert r1["active"] == ["task0", "task1", "task2"] and r1["epochs_trained"] == 2
    assert r2["active"] == [t for t in r1["active"] if t not in r1["subgroup"]]
    assert len(r2["active"]) >= 2, "the fixture's seed should leave two tasks for round 2"
    # each round's decision is the argmax of its last epoch's α, and is what the assembly used
    for r, name in ((r1, "round1"), (r2, "round2")):
        alpha = load(stages / name / "model.pt")
        low = 3 - r["round"]
        assert r["branch_points"] == {t: low + int(alpha[f"alpha.{t}"].argmax()) for t in r["active"]}
    derived = json.loads((stages / "derive" / "architecture.json").read_text())
    expected = assemble(["task0", "task1", "task2"], [r1, r2], points=3)
    assert {k: v for k, v in derived.items() if k not in ("margins", "min_margin")} == expected
    assert derived["architecture"]["name"] == "tree"
    assert set(derived["margins"]) == {f"round{r['round']} {t}" for r in (r1, r2) for t in r["active"]}
    # retraining trained that tree (valid: it rebuilds and loads strictly), with RLW u/Σu
    assert results["stage"] == "retrain" and results["architecture"]["name"] == "tree"
    assert results["architecture"]["groups"] == derived["architecture"]["groups"]
    assert results["weighting"] == {"name": "rlw", "distribution": "uniform", "normalise": "sum"}
    d = make_domain(SyntheticRegression, activations=["sinc"] * 3, hidden=[8, 8], unrelated=[2])
    tree = Tree(d.task_names, d.encoder_factory, d.head_factory, groups=results["architecture"]["groups"])
    tree.load_state_dict(load(stages / "retrain" / "model.pt"))
    assert results["parameters"]["total"] == sum(p.numel() for p in tree.parameters())
    assert results["stages"]["derive"]["derived"]["branch_points"] == derived["branch_points"]
    # the searched model the report shows: the largest round's supernet
    assert results["stages"]["derive"]["searched_parameters"] == max(r1["parameters"], r2["parameters"],
                                                                      key=lambda c: c["total"])


def test_resume_in_the_middle_of_round_2_gives_the_uninterrupted_run(synth_config, tmp_path, one_thread):
    cfg = synth_config(**{"train.checkpoint_every": 2})
    full = session.train(cfg, **quiet)
    (full_dir,) = run_dirs(tmp_path / "runs")
    with pytest.raises(KeyboardInterrupt):  # round 2: 3 batches per epoch, so step 4 is inside epoch 2
        session.train(cfg, extra_plugins=[InterruptAt(4, stage="round2")], **quiet)
    cut = next(d for d in run_dirs(tmp_path / "runs") if d != full_dir)
    assert load(cut / "stages" / "round2" / "checkpoint.pt")["step"] == 4
    assert not (cut / "stages" / "derive").exists()
    messages = []
    resumed = session.train(resume=cut, progress=False, echo=messages.append)
    assert any("stage round1: finished before" in str(m) for m in messages)
    assert any("resuming round2 at epoch 2" in str(m) for m in messages)
    assert resumed["mtl"] == full["mtl"]
    for name in ("round1", "round2", "retrain"):
        a, b = load(full_dir / "stages" / name / "model.pt"), load(cut / "stages" / name / "model.pt")
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert (json.loads((full_dir / "stages" / "derive" / "architecture.json").read_text())
            == json.loads((cut / "stages" / "derive" / "architecture.json").read_text()))
