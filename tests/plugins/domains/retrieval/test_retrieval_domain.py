"""The retrieval domain end to end (issue 22): both loss terms reach every shared parameter
through the engine, every weighting trains a few steps, the clean-only baseline is one task and
computes no perturbation, the attack leaves no gradient and no normalisation statistic behind,
evaluation reports R@1/5/10 per query kind, and bad input is one line with exit code 2."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from mtl_platform import registry as registry_mod
from mtl_platform.batches import to_device
from mtl_platform.config import apply_overrides, resolve
from mtl_platform.contracts import Needs, Weighting
from mtl_platform.errors import UserError
from mtl_platform.experiment import build_domain, build_experiment
from mtl_platform.gradients import GradientEngine

from conftest import assert_one_line_error, assert_train_refuses, weighting_args
from test_cli import run_cli

ROOT = Path(__file__).resolve().parents[4]
CONFIG = ROOT / "configs" / "retrieval" / "css_synthetic.yaml"
TINY = ["domain.data.image_size=16", "domain.data.train_scenes=4", "domain.data.val_scenes=2",
        "domain.data.test_scenes=3", "domain.data.mods_per_scene=2", "domain.data.distractors_per_scene=0",
        "domain.embed_dim=8", "domain.word_dim=4",
        "domain.batch_size=4", "domain.eval_batch_size=4", "train.epochs=1", "train.device=cpu",
        "train.progress=false", "baselines.stl=false",
        "domain.eval_attacks=[{name: fgsm, eps: 0.1}, {name: pgd, eps: 0.1, steps: 2}]"]


def config(sets=()):
    registry, _ = registry_mod.load()
    raw, _ = apply_overrides(yaml.safe_load(CONFIG.read_text()), [*TINY, *sets])
    return resolve(raw, registry), registry


@pytest.fixture(scope="module")
def domain():
    cfg, registry = config()
    return build_domain(cfg, registry)


def first_batch(domain, device="cpu"):
    return to_device(next(iter(domain.loaders("train", epoch=0))), torch.device(device))


def test_the_loss_terms_and_the_evaluated_tasks(domain):
    assert domain.task_names == ["clean", "perturbed"]
    assert domain.eval_tasks == ["clean", "fgsm", "pgd"]
    assert list(domain.spec()["pgd"]) == ["R@1", "R@5", "R@10"]
    assert domain.label_prefix() == "clean + perturbed (gaussian σ=0.3)"


class Recording(Weighting):
    """Equal weights, keeping the per-task Jacobian the engine formed."""

    name = "recording"
    needs = Needs.JACOBIAN
    scales_heads = False

    def weights(self, losses, jacobian=None, **computed):
        self.jacobian = jacobian.clone()
        return jacobian.sum(0)


def test_both_losses_give_nonzero_gradient_to_every_block_of_shared_parameters(domain, one_thread):
    torch.manual_seed(0)
    model = domain.build_model().train()
    weighting = Recording(domain.task_names)
    engine = GradientEngine(model, weighting, domain.task_names)
    batch = first_batch(domain)
    losses = domain.task_losses(batch, domain.perturb(batch, model), model)
    engine.backward(losses)
    jac = weighting.jacobian                                   # (2, P) over model.shared_parameters()
    assert jac.shape == (2, sum(p.numel() for p in model.shared_parameters()))
    offset = 0
    starts = {}
    for p in model.shared_parameters():
        starts[id(p)] = (offset, offset + p.numel())
        offset += p.numel()
    for block in model.parameter_blocks():                     # image CNN, text LSTM, composition, scale
        cols = torch.cat([torch.arange(*starts[id(p)]) for p in block])
        for task in range(2):
            assert float(jac[task, cols].abs().sum()) > 0, (task, [tuple(p.shape) for p in block])
    assert not torch.allclose(jac[0], jac[1])                  # two different tasks


def test_the_attack_leaves_no_parameter_gradient_and_no_normalisation_statistic(one_thread):
    cfg, registry = config(["domain.perturbation={name: pgd, eps: 0.1, steps: 2}"])
    dom = build_domain(cfg, registry)
    torch.manual_seed(0)
    model = dom.build_model().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    batch = first_batch(dom)
    out = dom.perturb(batch, model)
    assert all(p.grad is None for p in model.parameters())
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert float((out - batch[0]).abs().max()) <= 0.1 + 1e-6 and not torch.equal(out, batch[0])


@pytest.mark.parametrize("name", registry_mod.load()[0].names("weighting"))
def test_every_weighting_trains_a_few_steps(domain, name, one_thread):
    cfg, registry = config([f"weighting={json.dumps({'name': name, **weighting_args(name, domain.task_names)})}",
                            "domain.perturbation={name: fgsm, eps: 0.05}"])
    exp = build_experiment(cfg, registry, domain)
    exp.model.train()
    start = [p.detach().clone() for p in exp.model.parameters()]
    for batch in domain.loaders("train", epoch=0):
        out = domain.train_step(to_device(batch, exp.device), exp.model, exp.engine, exp.optimizers)
        assert sorted(out.losses) == ["clean", "perturbed"]
        assert all(torch.isfinite(v) for v in out.losses.values()), name
    moved = [not torch.equal(s, p) for s, p in zip(start, exp.model.parameters())]
    assert any(moved), name


def test_clean_only_is_one_task_and_computes_no_perturbation(one_thread, monkeypatch):
    cfg, registry = config(["domain.tasks=[clean]"])
    dom = build_domain(cfg, registry)
    assert dom.task_names == ["clean"] and dom.eval_tasks == ["clean", "fgsm", "pgd"]
    assert dom.label_prefix() == "clean only"
    exp = build_experiment(cfg, registry, dom)

    def refuse(*args, **kwargs):
        raise AssertionError("the clean-only protocol perturbed the queries")

    monkeypatch.setattr(type(dom.perturbation), "__call__", refuse)
    out = dom.train_step(first_batch(dom), exp.model, exp.engine, exp.optimizers)
    assert list(out.losses) == ["clean"]
    assert dom.stl_domain_config({"name": "retrieval", "tasks": None})["tasks"] == ["clean"]


def test_evaluation_reports_recall_of_every_query_kind_over_the_split(domain, one_thread):
    cfg, registry = config()
    exp = build_experiment(cfg, registry, domain)
    metrics = domain.evaluate(exp.model, "test")
    assert list(metrics) == ["clean", "fgsm", "pgd"]
    for values in metrics.values():
        assert list(values) == ["R@1", "R@5", "R@10"]
        assert 0 <= values["R@1"] <= values["R@5"] <= values["R@10"] <= 1
    # 3 base scenes x 3 images: a gallery of 8 per query, so every query is a hit at 10
    assert metrics["clean"]["R@10"] == 1.0
    assert all(p.grad is None for p in exp.model.parameters())


@pytest.mark.parametrize("sets, pattern", [
    (["domain.perturbation={name: cw}"], r"domain.perturbation.name.*'cw'"),
    (["domain.perturbation={name: fgsm, eps: 1.5}"], r"domain.perturbation.eps: got 1.5, expected .* in \(0, 1\]"),
    (["domain.perturbation={name: pgd, eps: 0}"], r"domain.perturbation.eps: got 0"),
    (["domain.perturbation={name: pgd, steps: 0}"], r"domain.perturbation.steps: got 0"),
    (["domain.eval_attacks=[{name: pgd, steps: 0}]"], r"domain.eval_attacks\[0\].steps: got 0"),
    (["domain.eval_attacks=[{name: fgsm, eps: -0.1}]"], r"domain.eval_attacks\[0\].eps: got -0.1"),
    (["domain.eval_attacks=[{name: deepfool}]"], r"domain.eval_attacks\[0\].name: unknown attack 'deepfool'"),
    (["domain.eval_attacks=[{name: fgsm}, {name: fgsm, eps: 0.1}]"], r"domain.eval_attacks\[1\]: a second.*label"),
    (["domain.data={name: css, root: /nonexistent/css}"],
     r"/nonexistent/css/css_toy_dataset_novel2_small.dup.npy' not found; get the CSS dataset from the TIRG release"),
    (["architecture=mtan"], r"architecture 'mtan'.*use architecture: hps"),
    (["domain.tasks=[noisy]"], r"domain.tasks: unknown task 'noisy'"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, sets, pattern):
    assert_train_refuses(config()[0], sets, tmp_path, capsys, pattern)


def test_the_paper_config_names_the_missing_data_in_one_line(tmp_path, capsys):
    path = ROOT / "configs" / "retrieval" / "css_tirg.yaml"
    code, out, err = run_cli(["train", str(path), "--no-progress", "--set", f"domain.data.root={tmp_path}/css",
                              "--set", f"output.root={tmp_path}/runs"], capsys)
    assert_one_line_error(code, out, err, r"css_toy_dataset_novel2_small.dup.npy' not found.*github.com/google/tirg")


def test_evaluation_with_random_attacks_repeats_exactly_and_leaves_the_random_stream(domain, one_thread):
    """Gaussian noise and PGD's random start at evaluation draw from the domain's seeded stream:
    two evaluations agree to the last digit (``mtl eval`` can reproduce a run's test figures), and
    the training's random stream is where it was."""
    cfg, registry = config(["domain.eval_attacks=[{name: gaussian, sigma: 0.5}, {name: pgd, eps: 0.2, steps: 2}]"])
    noisy = build_domain(cfg, registry)
    exp = build_experiment(cfg, registry, noisy)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    first = noisy.evaluate(exp.model, "test")
    assert torch.equal(torch.get_rng_state(), state)
    torch.manual_seed(7)
    assert noisy.evaluate(exp.model, "test") == first
