"""Run stages (DESIGN.md §3.4): CoNAL's search → derive → retrain pipeline, the bi-level step,
per-stage folders and resume of the stage that was running."""
import copy
import json

import pytest
import torch

from mtl_platform import registry, session
from mtl_platform.checkpoint import load
from mtl_platform.hookspecs import hookimpl
from mtl_platform.stages.bilevel import BilevelProtocol
from mtl_platform_plugins.architectures.conal import CoNAL
from mtl_platform_plugins.domains.synthetic_regression.domain import SyntheticRegression

from conftest import InterruptAt, config_writer, make_domain, run_dirs

quiet = {"progress": False, "echo": lambda *a, **k: None}

SYNTH = {
    "domain": {"name": "synthetic_regression", "activations": ["sinc", "sinc", "sinc"], "unrelated": [2],
               "train_samples": 96, "val_samples": 32, "test_samples": 32, "hidden": [8, 8],
               "batch_size": 16},
    "architecture": {"name": "conal", "search": {"epochs": 2, "alpha_lr": 0.05}},
    "optimizer": {"name": "adam", "lr": 1.0e-3},
    "train": {"epochs": 2, "seed": 0, "device": "cpu", "progress": False, "log_every": 2},
}


@pytest.fixture
def synth_config(tmp_path):
    return config_writer(SYNTH, tmp_path / "conal.yaml", tmp_path / "runs")


def test_conal_run_searches_derives_and_retrains_the_argmax_tree(synth_config, tmp_path, one_thread):
    results = session.train(synth_config(), **quiet)
    (run_dir,) = run_dirs(tmp_path / "runs")
    stages = run_dir / "stages"
    assert sorted(p.name for p in stages.iterdir()) == ["derive", "retrain", "search"]
    # the search stepped α away from uniform and logged it every epoch
    rows = [json.loads(line) for line in (stages / "search" / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and set(rows[-1]["architecture"]["alpha"]) == {"task0", "task1", "task2"}
    state = load(stages / "search" / "model.pt")
    alpha = {t: state[f"alpha.{t}"] for t in ("task0", "task1", "task2")}
    assert all(not torch.equal(a, torch.zeros_like(a)) for a in alpha.values())
    # derivation: argmax of the last epoch's α, written as plain JSON
    derived = json.loads((stages / "derive" / "architecture.json").read_text())
    expected = {t: int(a.argmax()) + 1 for t, a in alpha.items()}
    assert derived["branch_points"] == expected
    assert derived["architecture"] == {"name": "tree", "branch_points": expected}
    # retraining trained that tree, with CoNAL's default weighting (RLW, u/Σu), on the full set
    retrain = load(stages / "retrain" / "model.pt")
    assert not any(k.startswith("alpha") for k in retrain)
    assert results["architecture"]["name"] == "tree" and results["architecture"]["branch_points"] == expected
    assert results["weighting"] == {"name": "rlw", "distribution": "uniform", "normalise": "sum"}
    assert results["epochs_trained"] == 2 and results["stage"] == "retrain"
    assert results["stages"]["search"]["epochs_trained"] == 2
    # parameter counts of the derived tree: each task's own stages are its parameters
    counts = results["parameters"]
    assert counts["total"] == sum(p.numel() for p in retrain.values())
    assert counts["total"] == counts["shared"] + sum(counts["tasks"].values())
    assert json.loads((run_dir / "results.json").read_text())["stages"]["derive"]["derived"]["branch_points"] \
        == expected


def test_conal_report_shows_the_derived_architecture_and_parameter_counts(synth_config, tmp_path, one_thread):
    messages = []
    session.train(synth_config(**{"baselines.stl": True}), progress=False, echo=messages.append)
    text = "\n".join(str(m) for m in messages)
    assert "Δp =" in text and "η =" in text
    assert "model: tree; branch points task0 " in text and "searched model " in text
    (run_dir,) = run_dirs(tmp_path / "runs")
    report = (run_dir / "report.md").read_text()
    assert "branch points" in report
    gap = json.loads((run_dir / "results.json").read_text())["stages"]["derive"]["derived"]["margins"]["task0"]["gap"]
    assert f"decision margins (softmax gap) task0 {gap:.3f}" in report and "decision margins" in text


@pytest.mark.parametrize("stage, step", [("search", 3), ("retrain", 9)])
def test_resume_continues_the_stage_that_was_running(synth_config, tmp_path, stage, step, one_thread):
    cfg = synth_config(**{"train.checkpoint_every": 3})
    full = session.train(cfg, **quiet)
    (full_dir,) = run_dirs(tmp_path / "runs")
    with pytest.raises(KeyboardInterrupt):
        session.train(cfg, extra_plugins=[InterruptAt(step, stage=stage)], **quiet)
    cut = next(d for d in run_dirs(tmp_path / "runs") if d != full_dir)
    assert load(cut / "stages" / stage / "checkpoint.pt")["step"] == step
    messages = []
    resumed = session.train(resume=cut, progress=False, echo=messages.append)
    assert any(f"resuming {stage} at epoch" in str(m) for m in messages)
    if stage == "retrain":  # finished stages are not run again
        assert any("stage search: finished before" in str(m) for m in messages)
    assert resumed["mtl"] == full["mtl"]
    for name in ("search", "retrain"):
        a, b = load(full_dir / "stages" / name / "model.pt"), load(cut / "stages" / name / "model.pt")
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_bilevel_step_moves_alpha_first_on_the_val_batch_then_theta_with_the_new_alpha(one_thread):
    from mtl_platform.experiment import build_experiment
    from mtl_platform.config import resolve
    from mtl_platform.optim import build_optimizer

    reg, _ = registry.load(builtin_only=True)
    raw = copy.deepcopy(SYNTH)
    raw["weighting"] = {"name": "ew"}
    raw["optimizer"] = {"name": "sgd", "lr": 0.1, "momentum": 0.0}
    config = resolve(raw, reg)
    exp = build_experiment(config, reg)
    model = exp.model
    alpha = model.architecture_parameters()
    theta = [p for p in model.parameters() if all(p is not a for a in alpha)]
    exp.optimizers = [build_optimizer(config["optimizer"], theta),
                      build_optimizer(dict(config["optimizer"], lr=0.5), alpha)]
    settings = config["architecture"]["search"]
    protocol = BilevelProtocol(exp, settings, seed=0)
    assert len(protocol.tr) + len(protocol.val) == len(exp.domain.dataset("train"))
    assert not set(protocol.tr.indices) & set(protocol.val.indices)
    b_val, b_tr = next(iter(protocol.batches(0, 0)))
    before = copy.deepcopy(model)
    # what Algorithm 3 prescribes, by hand: α' = α − 0.5 ∇_α L(b_val; θ, α)
    ref = copy.deepcopy(before)
    total = sum(exp.domain.losses(b_val, ref).values())
    grads = torch.autograd.grad(total, ref.architecture_parameters())
    alpha_new = [a.detach() - 0.5 * g for a, g in zip(ref.architecture_parameters(), grads)]
    # then θ' = θ − 0.1 ∇_θ L(b_tr; θ, α') (EW: the plain sum)
    with torch.no_grad():
        for a, v in zip(ref.architecture_parameters(), alpha_new):
            a.copy_(v)
    ref_theta = [p for p in ref.parameters() if all(p is not a for a in ref.architecture_parameters())]
    grads = torch.autograd.grad(sum(exp.domain.losses(b_tr, ref).values()), ref_theta, allow_unused=True)
    theta_new = [p.detach() - 0.1 * (g if g is not None else 0) for p, g in zip(ref_theta, grads)]

    protocol.step((b_val, b_tr))
    for a, expect in zip(alpha, alpha_new):
        assert torch.allclose(a, expect, atol=1e-6)
    for p, expect in zip(theta, theta_new):
        assert torch.allclose(p, expect, atol=1e-6)
    assert all(a.grad is None for a in alpha)  # the θ step's ∇α is discarded


def test_forcing_conal_branch_points_gives_stl_and_hps_trees_with_the_same_weights():
    """The derived tree at the extremes is the STL networks (p = 1) or HPS (p = P)."""
    from mtl_platform_plugins.architectures.hps import HPS
    from mtl_platform_plugins.architectures.tree import Tree

    d = make_domain(SyntheticRegression, activations=["sinc"] * 3, train_samples=16)
    tasks = d.task_names
    x = torch.randn(5, 200)
    torch.manual_seed(0)
    stl = Tree(tasks, d.encoder_factory, d.head_factory, branch_points={t: 1 for t in tasks})
    assert stl.parameter_counts()["shared"] == 0
    for t in tasks:
        single = HPS([t], d.encoder_factory, d.head_factory)
        enc = {f"stages.{k}.{name}": v for k, blocks in enumerate(stl.blocks)
               for i, g in enumerate(stl.groups[k]) if g == [t]
               for name, v in blocks[i].state_dict().items()}
        single.encoder.load_state_dict(enc)
        single.heads[t].load_state_dict(stl.heads[t].state_dict())
        assert torch.allclose(stl(x)[t], single(x)[t], atol=1e-6)
    points = len(d.encoder_factory().stages) + 1
    shared = Tree(tasks, d.encoder_factory, d.head_factory, branch_points={t: points for t in tasks})
    hps = HPS(tasks, d.encoder_factory, d.head_factory)
    hps.encoder.load_state_dict({f"stages.{k}.{n}": v for k, b in enumerate(shared.blocks)
                                 for n, v in b[0].state_dict().items()})
    hps.heads.load_state_dict(shared.heads.state_dict())
    out, ref = shared(x), hps(x)
    assert all(torch.allclose(out[t], ref[t], atol=1e-6) for t in tasks)
    assert shared.parameter_counts()["shared"] == sum(p.numel() for p in hps.encoder.parameters())
    assert shared.rep is not None  # HPS-like tree exposes rep for rep-mode gradients


def test_conal_supernet_at_forced_alpha_matches_its_derived_tree_with_loaded_weights():
    """A one-hot α turns the supernet into exactly the derived tree (same modules)."""
    from mtl_platform_plugins.architectures.tree import Tree

    d = make_domain(SyntheticRegression, activations=["sinc"] * 3, train_samples=16)
    tasks = d.task_names
    torch.manual_seed(0)
    # independent copies: with the symmetric start every copy equals f_S and loading the wrong one would pass
    conal = CoNAL(tasks, d.encoder_factory, d.head_factory, search={"symmetric_init": False})
    points = {"task0": 1, "task1": 2, "task2": conal.points}
    with torch.no_grad():
        for t, p in points.items():
            conal.alpha[t].fill_(-1e4)
            conal.alpha[t][p - 1] = 1e4
    tree = Tree(tasks, d.encoder_factory, d.head_factory, branch_points=points)
    for k, level in enumerate(tree.groups):
        for i, g in enumerate(level):
            source = conal.private[g[0]].stages[k] if len(g) == 1 and points[g[0]] <= k + 1 else conal.shared.stages[k]
            tree.blocks[k][i].load_state_dict(source.state_dict())
    tree.heads.load_state_dict(conal.heads.state_dict())
    x = torch.randn(7, 200)
    out, ref = tree(x), conal(x)
    assert all(torch.allclose(out[t], ref[t], atol=1e-6) for t in tasks)
    assert conal.branch_points() == points


def test_a_derived_weighting_completes_the_runs_weighting_of_the_same_name():
    """``from_derived``'s rule names no weighting: the run's null keys take the derived values
    when both sections name the same weighting (DSMTL-AL's learned ``fixed`` weights are one
    case); a weighting of another name, or a key the user set, is trained as configured."""
    import types

    from mtl_platform.contracts import Weighting
    from mtl_platform.errors import UserError
    from mtl_platform.params import Param
    from mtl_platform.stages import from_derived

    class Tempered(Weighting):
        """A weighting with a value a search could learn."""

        name = "tempered"
        params = (Param("temperature", float, None, "learned by a search", optional=True, bounds="(0, inf)"),
                  Param("floor", float, 0.0, "set by hand", bounds="[0, inf)"))

        def weights(self, losses, **computed):
            return self.equal(losses)

    plugin = types.ModuleType("tempered_plugin")
    plugin.mtl_register = hookimpl(lambda registry: registry.add_weighting(Tempered))
    reg, _ = registry.load(builtin_only=True, extra_plugins=[plugin])
    derived = {"architecture": {"name": "tree", "branch_points": {"a": 1}}, "weighting": {"name": "tempered",
                                                                                         "temperature": 2.0}}
    ctx = types.SimpleNamespace(previous={"derive": {"derived": derived}}, registry=reg)

    def trained(weighting: dict) -> dict:
        return from_derived("derive")({"architecture": {}, "weighting": weighting}, ctx)["weighting"]

    assert trained({"name": "tempered", "temperature": None, "floor": 0.5}) == {
        "name": "tempered", "temperature": 2.0, "floor": 0.5}
    assert trained({"name": "tempered", "temperature": 3.0, "floor": 0.0})["temperature"] == 3.0
    assert trained({"name": "rlw", "distribution": "normal", "normalise": "softmax"}) == {
        "name": "rlw", "distribution": "normal", "normalise": "softmax"}
    derived["weighting"]["temperature"] = -1.0
    with pytest.raises(UserError, match=r"^derived weighting\.temperature: got -1\.0"):  # checked like a user's
        trained({"name": "tempered", "temperature": None, "floor": 0.0})
