"""Each UDA method's gradient space (DESIGN.md §3.3, §3.6; spec gradients.md §1.7): the
declared default per method, the config override, what the engine receives in every step that
calls it, GH's τ over that space, where it is written in the run, and EW unchanged by it."""
from pathlib import Path

import pytest
import torch
import yaml

from mtl_platform import registry as registry_mod
from mtl_platform import session
from mtl_platform.errors import UserError

from test_uda import CONFIG, TINY, experiment, first_batch, quiet

pytestmark = pytest.mark.usefixtures("one_thread")

SPEC_DEFAULTS = {"dann": "base_network", "cdan": "base_network", "mdd": "base_network",
                 "mcd": "generator", "dwl": "generator", "gvb": "base_network", "ssrt": "base_network"}
QUICK = {"dwl": ["domain.method.source_steps=1", "domain.method.generator_steps=2",
                 "domain.method.pseudo_label_steps=0"],
         "mcd": ["domain.method.num_k=1"],
         # SSRT on a tiny ViT (test_uda_ssrt.py), r = 1 from the first step so L_sr is in the alignment task
         "ssrt": ["domain.backbone=vit_b_16", "domain.vit.width=32", "domain.vit.layers=2", "domain.vit.heads=2",
                  "domain.vit.mlp=64", "domain.vit.patch=7", "domain.bottleneck=32",
                  "domain.method.sr_layers=[-1,0,1]", "domain.method.safe_training=false"]}


def expected_space(model, space):
    params = list(model.encoder.parameters())
    if space == "base_network":
        params += list(model.heads["classification"].parameters())
    return params


def record_engine(engine):
    """Wrap ``engine.backward``: keep, per call, the losses and the parameters its gradient space
    holds (``params``, or the engine's default — the model's shared parameters — when None)."""
    calls, real = [], engine.backward

    def backward(losses, params=None, weighting=None):
        space = list(params) if params is not None else engine.shared()
        calls.append((losses, [p for p in space if p.requires_grad]))
        return real(losses, params=params, weighting=weighting)

    engine.backward = backward
    return calls


def test_each_method_declares_the_specs_default_and_source_only_none():
    reg, _ = registry_mod.load()
    for method, default in SPEC_DEFAULTS.items():
        params = {p.name: p for p in reg.get("uda.method", method).cls.declared_params()}
        assert params["gradient_space"].default == default, method
        assert params["gradient_space"].choices == ("generator", "base_network")
    assert "gradient_space" not in {p.name for p in reg.get("uda.method", "source_only").cls.declared_params()}


@pytest.mark.parametrize("method", sorted(SPEC_DEFAULTS))
@pytest.mark.parametrize("override", [None, "generator", "base_network"])
def test_every_engine_call_gets_the_methods_gradient_space(method, override):
    sets = [f"domain.method.name={method}", "weighting.name=gh", *QUICK.get(method, [])]
    if override:
        sets.append(f"domain.method.gradient_space={override}")
    exp = experiment(sets)
    calls = record_engine(exp.engine)
    exp.domain.train_step(first_batch(exp), exp.model, exp.engine, exp.optimizers)
    want = [id(p) for p in expected_space(exp.model, override or SPEC_DEFAULTS[method])]
    assert len(calls) == (2 if method == "dwl" else 1)  # DWL: once per generator step; MCD: step B
    for _, space in calls:
        assert [id(p) for p in space] == want
    disc = {id(p) for p in exp.model.heads["alignment"].parameters()}
    assert not disc & set(want)  # never the discriminator


def gh_by_hand(losses, space):
    g = [torch.cat([(x if x is not None else torch.zeros_like(p)).flatten()
                    for x, p in zip(torch.autograd.grad(losses[t], space, retain_graph=True, allow_unused=True),
                                    space)])
         for t in ("alignment", "classification")]
    d = g[0] @ g[1]
    return torch.ones(2) if d >= 0 else torch.stack([1 - d / (g[0] @ g[0]), 1 - d / (g[1] @ g[1])])


@pytest.mark.parametrize("method", sorted(SPEC_DEFAULTS))
def test_gh_weights_are_computed_over_the_declared_space(method):
    """τ in every engine call equals GH by hand over the declared space, in seeds until one
    step has conflicting gradients (where τ depends on the space)."""
    conflicted = False
    for seed in range(8):
        exp = experiment([f"domain.method.name={method}", "weighting.name=gh", f"train.seed={seed}",
                          *QUICK.get(method, [])])
        taus, real = [], exp.engine.backward

        def checked(losses, params=None, weighting=None):
            expected = gh_by_hand(losses, expected_space(exp.model, SPEC_DEFAULTS[method]))
            taus.append((real(losses, params=params, weighting=weighting), expected))
            return taus[-1][0]

        exp.engine.backward = checked
        xs, ys, xt, _ = first_batch(exp)  # at full reversal (at progress 0 the GRL gives G no g_align)
        exp.domain.train_step((xs, ys, xt, torch.tensor(1.0)), exp.model, exp.engine, exp.optimizers)
        assert taus
        for answer, expected in taus:
            assert torch.allclose(answer.float(), expected.float(), rtol=1e-4, atol=1e-5), (method, answer, expected)
        if any(float(e.max()) > 1 for _, e in taus):
            conflicted = True
            break
    assert conflicted


def test_cdan_gh_includes_the_classifiers_gradient():
    """In a conflicting step the classifier's share of ‖g_cls‖ lowers τ_cls; τ_align and the
    sign of g_alignᵀg_cls do not change (L_align does not reach C)."""
    sets = ["domain.method.name=cdan", "weighting.name=gh"]
    found = False
    for seed in range(6):
        taus = []
        for space in ("generator", "base_network"):  # built right before its step: the same dropout masks
            exp = experiment([*sets, f"domain.method.gradient_space={space}", f"train.seed={seed}"])
            xs, ys, xt, _ = first_batch(exp)  # at full reversal: at progress 0, G gets no g_align
            exp.domain.train_step((xs, ys, xt, torch.tensor(1.0)), exp.model, exp.engine, exp.optimizers)
            taus.append(exp.engine.last_weights.clone())
        tau_g, tau_b = taus
        if tau_g[1] > 1:  # conflict in this batch
            found = True
            assert torch.allclose(tau_g[0], tau_b[0], rtol=1e-5)
            assert 1 < tau_b[1] < tau_g[1]
            break
    assert found


@pytest.mark.parametrize("method", sorted(SPEC_DEFAULTS))
def test_ew_updates_are_bit_identical_whatever_the_gradient_space(method):
    after = []
    for space in ("generator", "base_network"):
        exp = experiment([f"domain.method.name={method}", "weighting.name=ew",
                          f"domain.method.gradient_space={space}", *QUICK.get(method, [])])
        for batch in exp.domain.loaders("train", epoch=0):
            exp.domain.train_step(batch, exp.model, exp.engine, exp.optimizers)
        after.append([p.detach().clone() for p in exp.model.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*after))


def test_the_gradient_space_is_written_into_the_run(tmp_path):
    base = [*TINY, "domain.method.name=cdan", "domain.method.hidden=32", "weighting.name=gh",
            f"output.root={tmp_path}"]
    default = session.train(CONFIG, sets=base, **quiet)
    overridden = session.train(CONFIG, sets=[*base, "domain.method.gradient_space=generator"], **quiet)
    for results, space in ((default, "base_network"), (overridden, "generator")):
        config = yaml.safe_load((Path(results["run_dir"]) / "config.yaml").read_text())
        assert config["domain"]["method"]["gradient_space"] == space
    assert default["label"] == "cdan · hps + gh"
    assert overridden["label"] == "cdan (generator) · hps + gh"  # the report tells the two apart


@pytest.mark.parametrize("sets, message", [
    (["domain.method.gradient_space=everything"],
     "domain.method.gradient_space: got 'everything', allowed: 'generator', 'base_network'"),
    (["domain.method.name=source_only", "domain.method.gradient_space=generator"],
     "domain.method.gradient_space: unknown key"),
    (["domain.method.name=mcd", "weighting.name=pcgrad"],
     "domain.method.gradient_space: MCD applies the weighting in step B"),
])
def test_a_gradient_space_that_cannot_apply_is_refused_in_one_line(tmp_path, capsys, sets, message):
    from mtl_platform.cli import main

    argv = [*TINY, *sets, f"output.root={tmp_path / 'runs'}"]
    with pytest.raises(SystemExit) as exit_:
        main(["train", str(CONFIG), *(a for s in argv for a in ("--set", s))])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert err.startswith("mtl: error: ") and message in err, err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_mcd_with_a_gradient_method_over_the_base_network_weights_the_classifiers_update():
    """With ``base_network`` step B's classifiers are in the space: they get PCGrad's combined
    gradient (MGDA: a convex combination), not the unweighted sum that EW gives them."""
    after = {}
    for name in ("ew", "mgda"):
        exp = experiment(["domain.method.name=mcd", f"weighting.name={name}", "domain.method.num_k=1",
                          "domain.method.gradient_space=base_network"])
        exp.domain.train_step(first_batch(exp), exp.model, exp.engine, exp.optimizers)
        after[name] = [p.detach().clone() for p in exp.model.heads["classification"].parameters()]
    with pytest.raises(UserError, match="gradient method"):
        experiment(["domain.method.name=mcd", "weighting.name=pcgrad"])
    assert any(not torch.equal(a, b) for a, b in zip(after["ew"], after["mgda"]))
