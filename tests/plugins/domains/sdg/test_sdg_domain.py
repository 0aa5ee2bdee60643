"""The sdg domain (DESIGN.md §3.6; spec gradients.md §2): K synthesised domains as the loss terms,
unseen targets evaluated, selection on source data only, the sequential update, ERM as the STL
baseline, and one clear line for bad input."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
import yaml

from mtl_platform import registry as registry_mod
from mtl_platform import session
from mtl_platform.batches import to_device
from mtl_platform.config import apply_overrides, resolve
from mtl_platform.experiment import build_domain, build_experiment

from conftest import assert_one_line_error, weighting_args
from test_cli import run_cli

ROOT = Path(__file__).resolve().parents[4]
CONFIG = ROOT / "configs" / "sdg" / "digits.yaml"
TINY = ["domain.width=0.0625", "domain.iterations=2", "domain.batch_size=6", "domain.eval_batch_size=512",
        "train.epochs=1", "train.device=cpu", "train.progress=false", "baselines.stl=false"]
quiet = {"progress": False, "echo": lambda *a, **k: None}


def config(sets=()):
    registry, _ = registry_mod.load()
    raw, _ = apply_overrides(yaml.safe_load(CONFIG.read_text()), [*TINY, *sets])
    return resolve(raw, registry), registry


@pytest.fixture(scope="module")
def digits_domain():
    cfg, registry = config()
    return build_domain(cfg, registry)


def experiment(sets=(), domain=None):
    cfg, registry = config(sets)
    return build_experiment(cfg, registry, domain)


def first_batch(domain, epoch=0):
    return next(iter(domain.loaders("train", epoch=epoch)))


def digest(images: torch.Tensor) -> set[str]:
    return {hashlib.sha1(x.contiguous().numpy().tobytes()).hexdigest() for x in images}


def test_the_loss_terms_are_the_synthesised_domains_and_the_targets_are_evaluated(digits_domain):
    d = digits_domain
    assert d.task_names == ["aug0", "aug1", "aug2"]
    assert d.eval_tasks == ["uci", "mnist_m", "shift"]
    assert d.selection_tasks == ["source"]
    assert set(d.spec()) == {"uci", "mnist_m", "shift"}


def test_the_k_domains_differ_and_each_is_a_pure_function_of_seed_epoch_index_k(digits_domain):
    d = digits_domain
    batch = first_batch(d)
    a = d.domain_batches(batch)
    b = d.domain_batches(first_batch(d))  # the same batch read again
    assert len(a) == 3
    for (xa, ya), (xb, yb) in zip(a, b):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    for i in range(3):
        for j in range(i + 1, 3):
            assert not torch.equal(a[i][0], a[j][0])  # the K domains differ
    x, y, keys = batch
    again = d.domain_batches((x, y, keys))
    assert torch.equal(again[1][0], a[1][0])
    # the same samples in another epoch: other draws
    other = tuple(k ^ 1 for k in keys)
    assert not torch.equal(d.domain_batches((x, y, other))[0][0], a[0][0])
    # the same sample index gets the same draw, whatever batch it is in
    single = d.domain_batches((x[:1], y[:1], keys[:1]))
    assert torch.allclose(single[2][0], a[2][0][:1], atol=1e-6)


def test_no_target_image_reaches_training_or_model_selection(digits_domain):
    d = digits_domain
    train, val = d.dataset("train"), d.dataset("val")
    seen = digest(torch.stack([train[i][0] for i in range(len(train))])) | digest(
        torch.stack([val[i][0] for i in range(len(val))]))
    for target, data in d.dataset("test").items():
        images = torch.stack([data[i][0] for i in range(len(data))])
        assert not seen & digest(images), target
    # the training batches come from the source training set only, validation reports the source only
    batch = first_batch(d)
    assert digest(batch[0]) <= digest(torch.stack([train[i][0] for i in range(len(train))]))
    model = experiment(domain=d).model
    assert set(d.evaluate(model, "val")) == {"source"}
    test = d.evaluate(model, "test")
    assert set(test) == {"uci", "mnist_m", "shift", "mean"}
    assert test["mean"]["accuracy"] == pytest.approx(sum(test[t]["accuracy"] for t in d.eval_tasks) / 3)


def test_one_classifier_is_read_by_every_loss_term(digits_domain):
    model = experiment(domain=digits_domain).model
    heads = {id(model.heads[t]) for t in digits_domain.task_names}
    assert len(heads) == 1


@pytest.fixture(scope="module")
def sequential_domain(digits_domain):
    cfg, registry = config(["domain.update=sequential"])
    domain = build_domain(cfg, registry)
    assert domain.config["update"] == "sequential"
    return domain


def _params_after(update, weighting, domain, optimizer="sgd"):
    assert domain.config["update"] == update
    exp = experiment([f"weighting={{name: {weighting}}}", f"domain.update={update}", f"optimizer.name={optimizer}",
                      "optimizer.lr=0.1", "optimizer.momentum=0.0"], domain=domain)
    torch.manual_seed(0)
    batch = to_device(first_batch(domain), exp.device)
    before = {k: v.clone() for k, v in exp.model.state_dict().items()}
    out = exp.domain.train_step(batch, exp.model, exp.engine, exp.optimizers)
    return before, exp.model.state_dict(), out


def test_sequential_dge_takes_k_steps_that_plain_sgd_sums_to_the_summed_update(digits_domain, sequential_domain):
    b1, seq, out_seq = _params_after("sequential", "equilibrium", sequential_domain)
    b2, summed, out_sum = _params_after("sum", "equilibrium", digits_domain)
    for key in b1:
        assert torch.equal(b1[key], b2[key])  # the same start
    moved = False
    for key in seq:
        assert torch.allclose(seq[key], summed[key], atol=1e-6), key
        moved |= not torch.equal(seq[key], b1[key])
    assert moved
    assert torch.allclose(out_seq.weights, out_sum.weights, atol=1e-9)


def test_sequential_differs_from_summed_under_adam(digits_domain, sequential_domain):
    _, seq, _ = _params_after("sequential", "equilibrium", sequential_domain, optimizer="adam")
    _, summed, _ = _params_after("sum", "equilibrium", digits_domain, optimizer="adam")
    assert any(not torch.allclose(seq[k], summed[k], atol=1e-6) for k in seq)


def test_every_weighting_trains_a_few_steps(digits_domain, one_thread):
    registry, _ = registry_mod.load()
    for name in registry.names("weighting"):
        args = weighting_args(name, digits_domain.task_names)
        sets = [f"weighting={json.dumps({'name': name, **args})}"]
        exp = experiment(sets, domain=digits_domain)
        start = [p.detach().clone() for p in exp.model.parameters()]
        for batch in digits_domain.loaders("train", epoch=0):
            out = exp.domain.train_step(to_device(batch, exp.device), exp.model, exp.engine, exp.optimizers)
            assert all(torch.isfinite(v) for v in out.losses.values()), name
        assert any(not torch.equal(a, b) for a, b in zip(start, exp.model.parameters())), name


def test_erm_is_the_stl_baseline_trained_once_for_every_target(tmp_path):
    cfg, _ = config(["weighting=pcgrad", "baselines.stl=true", f"output.root={tmp_path / 'runs'}"])
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    said = []
    results = session.train(path, progress=False, echo=said.append)
    assert sum("training" in line for line in said if line.startswith("STL baseline")) == 1
    assert sum("reusing" in line for line in said if line.startswith("STL baseline")) == 2
    baselines = json.loads((Path(results["run_dir"]) / "baselines.json").read_text())
    assert set(baselines) == {"uci", "mnist_m", "shift"}
    assert len({b["hash"] for b in baselines.values()}) == 1
    erm = yaml.safe_load((Path(baselines["uci"]["path"]) / "config.yaml").read_text())
    assert erm["domain"]["synthesis"]["name"] == "plain" and erm["weighting"]["name"] == "ew"
    assert set(results["stl"]) == {"uci", "mnist_m", "shift"}


@pytest.mark.parametrize("sets, message", [
    (["domain.synthesis.k=2", "weighting.name=equilibrium"], "is a no-op"),
    (["domain.synthesis.k=1"], "domain.synthesis.k"),
    (["domain.data.name=pacs_typo"], "pacs_typo"),
    (["domain.data.targets=[usps]"], "usps"),
    (["domain.data={name: pacs, source: photo, root: MISSING}"], "nowhere"),
    (["domain.data={name: pacs, source: photo, root: EMPTY}"], "PACS"),
])
def test_bad_input_is_one_line_exit_2_and_no_run_directory(tmp_path, capsys, sets, message):
    runs = tmp_path / "runs"
    (tmp_path / "empty").mkdir()
    sets = [s.replace("MISSING", str(tmp_path / "nowhere")).replace("EMPTY", str(tmp_path / "empty")) for s in sets]
    args = ["train", str(CONFIG), "--no-progress"]
    for s in [*TINY, f"output.root={runs}", *sets]:
        args += ["--set", s]
    code, out, err = run_cli(args, capsys)
    assert message in assert_one_line_error(code, out, err)
    assert not runs.exists() or not any(runs.iterdir())


def test_sam_runs_over_the_domains_gradient_space_and_sequential_refuses_a_closure(tmp_path, capsys):
    exp = experiment(["closure={name: sam, rho: 0.05}", "weighting=pcgrad"])
    batch = to_device(first_batch(exp.domain), exp.device)
    closure = exp.domain.closure(batch, exp.model)
    assert [id(p) for p in closure.params] == [id(p) for p in exp.model.parameters() if p.requires_grad]
    before = [p.detach().clone() for p in exp.model.parameters()]
    exp.closure.step(closure, exp.engine, exp.optimizers)
    assert any(not torch.equal(a, b) for a, b in zip(before, exp.model.parameters()))
    runs = tmp_path / "runs"
    args = ["train", str(CONFIG), "--no-progress"]
    for s in [*TINY, f"output.root={runs}", "closure=sam", "domain.update=sequential"]:
        args += ["--set", s]
    code, out, err = run_cli(args, capsys)
    assert "sequential" in assert_one_line_error(code, out, err)
    assert not runs.exists() or not any(runs.iterdir())
