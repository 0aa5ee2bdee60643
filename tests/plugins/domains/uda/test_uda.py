"""UDA as two tasks (spec gradients.md §1.7): the gradient-reversal layer, which parameters each
loss reaches (each method's gradient space: test_uda_gradient_space.py), every method with every
weighting, and switching method, weighting and direction from the command line."""
import json
from pathlib import Path

import pytest
import torch
import yaml

from mtl_platform import registry as registry_mod
from mtl_platform import session
from mtl_platform.config import apply_overrides, resolve
from mtl_platform.contracts import Needs
from mtl_platform.experiment import build_experiment
from mtl_platform_plugins.domains.uda.methods.gradient_reversal import grl_coefficient, reverse_gradient

from conftest import weighting_args

ROOT = Path(__file__).resolve().parents[4]
CONFIG = ROOT / "configs" / "uda" / "mnist_to_uci.yaml"
TINY = ["domain.data.train_per_domain=64", "domain.iterations=2", "domain.batch_size=8",
        "train.epochs=1", "train.device=cpu", "baselines.stl=false"]
quiet = {"progress": False, "echo": lambda *a, **k: None}


def experiment(sets=()):
    reg, _ = registry_mod.load()
    small = [] if "domain.method.name=source_only" in sets else ["domain.method.hidden=32"]
    raw, _ = apply_overrides(yaml.safe_load(CONFIG.read_text()), [*TINY, *small, *sets])
    return build_experiment(resolve(raw, reg), reg)


def first_batch(exp):
    return next(iter(exp.domain.loaders("train", epoch=0)))


def test_gradient_reversal_is_identity_forward_and_minus_coeff_backward():
    x = torch.randn(4, 3, requires_grad=True)
    y = reverse_gradient(x, 0.3)
    assert torch.equal(y, x)
    w = torch.randn(4, 3)
    (y * w).sum().backward()
    assert torch.allclose(x.grad, -0.3 * w)
    assert grl_coefficient(0.0).item() == 0.0
    assert grl_coefficient(1.0).item() == pytest.approx(2 / (1 + torch.exp(torch.tensor(-10.0)).item()) - 1)
    assert grl_coefficient(0.5).item() == pytest.approx(2 / (1 + torch.exp(torch.tensor(-5.0)).item()) - 1)


@pytest.mark.parametrize("method", ["dann", "cdan", "mdd", "dwl"])
def test_classification_reaches_no_discriminator_parameter_and_alignment_reaches_the_generator(method, one_thread):
    exp = experiment([f"domain.method.name={method}"])
    model, domain = exp.model, exp.domain
    assert domain.task_names == ["alignment", "classification"] and domain.eval_tasks == ["classification"]
    xs, ys, xt, _ = first_batch(exp)
    losses = domain.losses((xs, ys, xt, torch.tensor(1.0)), model)
    disc = list(model.heads["alignment"].parameters())
    grads = torch.autograd.grad(losses["classification"], disc, allow_unused=True, retain_graph=True)
    assert all(g is None or g.abs().sum() == 0 for g in grads)
    enc = list(model.encoder.parameters())
    g_align = torch.autograd.grad(losses["alignment"], enc + disc, retain_graph=True)
    assert all(g.abs().sum() > 0 for g in g_align[len(enc):])      # D learns
    assert sum(g.abs().sum() for g in g_align[:len(enc)]) > 0       # G receives the (reversed) alignment gradient
    assert {id(p) for p in model.shared_parameters()} == {id(p) for p in enc}  # shared: G (test_uda_gradient_space)


def test_the_generator_gets_the_reversed_gradient_scaled_by_the_schedule(one_thread):
    exp = experiment()
    model, domain = exp.model, exp.domain
    model.eval()  # no dropout: two evaluations of the same batch are identical
    xs, ys, xt, _ = first_batch(exp)
    enc = list(model.encoder.parameters())
    disc = list(model.heads["alignment"].parameters())

    def align_grads(progress):
        loss = domain.losses((xs, ys, xt, torch.tensor(progress)), model)["alignment"]
        return torch.autograd.grad(loss, enc + disc)

    lam_a, lam_b = grl_coefficient(0.1).item(), grl_coefficient(0.6).item()
    a, b = align_grads(0.1), align_grads(0.6)
    for ga, gb in zip(a[:len(enc)], b[:len(enc)]):    # G: −λ · ∂L/∂G
        assert torch.allclose(ga * lam_b, gb * lam_a, atol=1e-6)
    for ga, gb in zip(a[len(enc):], b[len(enc):]):    # D: unchanged by the reversal
        assert torch.allclose(ga, gb, atol=1e-6)


REG, _ = registry_mod.load()


def weightings():
    return [c.name for c in REG.components("weighting")]


@pytest.mark.parametrize("method", ["dann", "cdan", "mcd", "mdd", "dwl", "source_only"])
def test_every_weighting_trains_every_method_for_a_few_steps(method, one_thread):
    quick = ["domain.method.source_steps=1", "domain.method.generator_steps=1"] if method == "dwl" else []
    for name in weightings():
        args = [f"weighting.{k}={json.dumps(v)}" for k, v in weighting_args(name, ["alignment", "classification"]
                                                                          if method != "source_only"
                                                                          else ["classification"]).items()]
        cls = REG.get("weighting", name).cls
        # MCD applies the weighting in step B (classifiers only): a gradient method needs them in its space
        space = (["domain.method.gradient_space=base_network"]
                 if method == "mcd" and not (cls.scales_heads or cls.needs is Needs.LOSSES) else [])
        exp = experiment([f"domain.method.name={method}", f"weighting.name={name}", *args, *quick, *space])
        before = [p.detach().clone() for p in exp.model.encoder.parameters()]
        for batch in exp.domain.loaders("train", epoch=0):
            losses = exp.domain.train_step(batch, exp.model, exp.engine, exp.optimizers).losses
            assert all(torch.isfinite(v) for v in losses.values()), (method, name)
        moved = any(not torch.equal(a, b) for a, b in zip(before, exp.model.encoder.parameters()))
        assert moved, (method, name)


def test_method_weighting_and_direction_switch_from_the_command_line(tmp_path, one_thread):
    sets = [*TINY, "domain.method.name=cdan", "weighting.name=gh_plus_plus", "domain.data.source=uci",
            "domain.data.target=mnist", f"output.root={tmp_path}"]
    results = session.train(CONFIG, sets=sets, **quiet)
    config = (Path(results["run_dir"]) / "config.yaml").read_text()
    assert "name: cdan" in config and "name: gh_plus_plus" in config
    assert "source: uci" in config and "target: mnist" in config
    assert set(results["test"]) == {"classification"}
    assert 0.0 <= results["test"]["classification"]["accuracy"] <= 1.0
    assert results["label"] == "cdan · hps + gh_plus_plus"  # the report tells methods apart


def test_the_reverse_direction_config_trains_uci_to_mnist(tmp_path, one_thread):
    sets = [*TINY, "domain.method.hidden=32", f"output.root={tmp_path}"]
    results = session.train(ROOT / "configs" / "uda" / "uci_to_mnist.yaml", sets=sets, **quiet)
    config = yaml.safe_load((Path(results["run_dir"]) / "config.yaml").read_text())
    assert config["domain"]["data"]["source"] == "uci" and config["domain"]["data"]["target"] == "mnist"
    assert 0.0 <= results["test"]["classification"]["accuracy"] <= 1.0


def test_every_method_shares_one_cached_source_only_baseline(tmp_path, one_thread):
    messages = []
    base = [*TINY, "baselines.stl=true", "domain.method.hidden=32", f"output.root={tmp_path}"]
    first = session.train(CONFIG, sets=[*base, "domain.method.name=dann"], progress=False, echo=messages.append)
    assert any("training" in str(m) and "STL baseline" in str(m) for m in messages)
    messages.clear()
    second = session.train(CONFIG, sets=[*base, "domain.method.name=cdan"], progress=False, echo=messages.append)
    assert any("reusing cached" in str(m) for m in messages)
    assert not any("STL baseline" in str(m) and "training" in str(m) for m in messages)
    assert first["stl"] == second["stl"]  # the same source-only model's target metrics
    stl_dir = Path(json.loads((Path(second["run_dir"]) / "baselines.json").read_text())["classification"]["path"])
    assert "name: source_only" in (stl_dir / "config.yaml").read_text()


def test_mcd_step_b_moves_only_the_classifiers_and_step_c_only_the_generator(one_thread, monkeypatch):
    from mtl_platform_plugins.domains.uda.methods import mcd as mcd_module

    exp = experiment(["domain.method.name=mcd", "domain.method.num_k=2", "weighting.name=gh"])
    model = exp.model
    heads, enc = list(model.heads["classification"].parameters()), list(model.encoder.parameters())
    snapshots = []
    real_discrepancy = mcd_module.discrepancy

    def spy(a, b):  # called in step B's losses (target half) and once per step C: record who moved
        snapshots.append(([p.detach().clone() for p in enc], [p.detach().clone() for p in heads]))
        return real_discrepancy(a, b)

    monkeypatch.setattr(mcd_module, "discrepancy", spy)
    batch = first_batch(exp)
    exp.domain.train_step(batch, model, exp.engine, exp.optimizers)
    after = ([p.detach().clone() for p in enc], [p.detach().clone() for p in heads])
    states = snapshots + [after]  # [before B, before C1, before C2, after]

    def moved(a, b):
        return any(not torch.equal(x, y) for x, y in zip(a, b))

    (b_enc, b_heads), (c1_enc, c1_heads) = states[0], states[1]
    assert not moved(b_enc, c1_enc) and moved(b_heads, c1_heads)          # B: classifiers only
    assert moved(c1_enc, states[2][0]) and not moved(c1_heads, states[2][1])  # C: generator only
    assert exp.engine.last_weights is not None  # the weighting saw step B's pair


def test_mcd_refuses_gradient_accumulation():
    from mtl_platform.errors import UserError

    exp = experiment(["domain.method.name=mcd", "train.accumulate=2"])
    with pytest.raises(UserError, match="train.accumulate"):
        exp.domain.train_step(first_batch(exp), exp.model, exp.engine, exp.optimizers)


def test_mdd_adversary_agrees_on_source_and_disagrees_on_target_by_hand(one_thread):
    """The disparity loss equals γ·CE(F'(f_s), ŷ_s) − mean log(1 − p'_t[ŷ_t]) computed by hand."""
    exp = experiment(["domain.method.name=mdd", "domain.method.margin=2.0", "domain.method.trade_off=0.5"])
    model, domain = exp.model, exp.domain
    model.eval()
    xs, ys, xt, _ = first_batch(exp)
    got = domain.losses((xs, ys, xt, torch.tensor(1.0)), model)["alignment"]
    with torch.no_grad():
        fs, ft = model.encoder(xs), model.encoder(xt)
        ps, pt = model.heads["classification"](fs).argmax(1), model.heads["classification"](ft).argmax(1)
        adv_s, adv_t = model.heads["alignment"](fs), model.heads["alignment"](ft)
        src = -adv_s.log_softmax(1)[torch.arange(len(ps)), ps].mean()
        tgt = -torch.log(1 - adv_t.softmax(1)[torch.arange(len(pt)), pt]).mean()
    assert got.item() == pytest.approx(0.5 * (2.0 * src + tgt).item(), rel=1e-5)


def test_mcd_generator_without_momentum_takes_plain_sgd_steps(one_thread):
    """generator_momentum: false (tllib's MCD): every G step is p − lr·(∇p + wd·p), no momentum
    buffer; the classifiers keep the optimizer's momentum."""
    from mtl_platform_plugins.domains.uda.methods.partial_step import partial_step

    exp = experiment(["domain.method.name=mcd", "domain.method.generator_momentum=false"])
    model, (opt,) = exp.model, exp.optimizers
    xs, ys, xt, _ = first_batch(exp)
    model.eval()
    enc, heads = list(model.encoder.parameters()), list(model.heads["classification"].parameters())
    loss = model.heads["classification"](model.encoder(xs)).logsumexp(1).mean()
    grads = torch.autograd.grad(loss, enc, retain_graph=True)
    before = [p.detach().clone() for p in enc]
    lr, wd = opt.param_groups[0]["lr"], opt.param_groups[0]["weight_decay"]
    partial_step(model, exp.optimizers, loss, enc + heads, plain=enc)
    for p, p0, g in zip(enc, before, grads):
        assert torch.allclose(p, p0 - lr * (g + wd * p0), atol=1e-7)
        assert "momentum_buffer" not in opt.state.get(p, {})
    evaluated = list(model.heads["classification"].members[0].parameters())  # the loss reached F1 only
    assert all(opt.state[p].get("momentum_buffer") is not None for p in evaluated)
    exp.domain.train_step(first_batch(exp), model, exp.engine, exp.optimizers)  # A, B, C: still no buffer on G
    assert all("momentum_buffer" not in opt.state.get(p, {}) for p in enc)


def test_mcd_generator_without_momentum_refuses_adam_before_any_run_directory(tmp_path, one_thread, capsys):
    """Refused while the experiment is built: exit 2, one line, and no run directory is left."""
    from mtl_platform.cli import main
    from mtl_platform.errors import UserError

    with pytest.raises(UserError, match="generator_momentum: false needs optimizer.name: sgd"):
        experiment(["domain.method.name=mcd", "domain.method.generator_momentum=false", "optimizer.name=adam"])
    sets = [*TINY, "domain.method.name=mcd", "domain.method.generator_momentum=false", "optimizer.name=adam",
            f"output.root={tmp_path / 'runs'}"]
    with pytest.raises(SystemExit) as exit_:
        main(["train", str(CONFIG), *(a for s in sets for a in ("--set", s))])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert err.startswith("mtl: error: domain.method.generator_momentum: false needs optimizer.name: sgd")
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
    experiment(["domain.method.name=mcd", "domain.method.generator_momentum=false"])  # sgd: accepted
