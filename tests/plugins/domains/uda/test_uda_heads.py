"""The generator and heads of the classifier-discrepancy methods as their papers' code builds
them: MCD's digit generator (conv-BN, no dropout), classifiers of depth 1 or 2 (MCD's digit
net and tllib's head have two hidden layers), and MDD's classifier in the adversarial
classifier's form (tllib: both heads alike)."""
import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mtl_platform.errors import UserError
from mtl_platform_plugins.domains.uda.backbones import mcd_digits_generator
from mtl_platform_plugins.domains.uda.methods.classifiers import Classifiers

from test_uda import experiment, first_batch


def test_mcd_digits_generator_has_the_papers_shapes_and_no_dropout():
    g = mcd_digits_generator(1, 28)
    assert g.out_shape == (768,)                          # 48 × 4 × 4 at 28 px (MCD's usps.py)
    assert g(torch.randn(3, 1, 28, 28)).shape == (3, 768)
    assert mcd_digits_generator(3, 32)(torch.randn(2, 3, 32, 32)).shape == (2, 48 * 5 * 5)
    kinds = {type(m) for m in g.modules()}
    assert nn.BatchNorm2d in kinds and not kinds & {nn.Dropout, nn.Dropout2d}
    assert [tuple(s) if isinstance(s, tuple) else s for s in g.stage_shapes] == [(32, 12, 12), (48, 4, 4), (768,)]


def _first_bn_after_a_step(method, batch, extra=()):
    """The first BN's running mean after one training step, with conv1 frozen and BN's
    cumulative averaging (momentum None): the mean of conv1's output over every batch the
    step normalised. Also conv1's mean output on the source and on the target batch."""
    quick = ["domain.method.source_steps=2", "domain.method.generator_steps=1"] if method == "dwl" else []
    exp = experiment([f"domain.method.name={method}", "domain.backbone=mcd_digits", *quick, *extra])
    conv, bn = exp.model.encoder.stages[0][0], exp.model.encoder.stages[0][1]
    conv.requires_grad_(False)
    bn.momentum = None
    bn.reset_running_stats()
    xs, ys, xt, progress = batch
    with torch.no_grad():
        mean_s, mean_t = conv(xs).mean((0, 2, 3)), conv(xt).mean((0, 2, 3))
    exp.domain.train_step(batch, exp.model, exp.engine, exp.optimizers)
    return bn.running_mean, mean_s, mean_t


# The source's share α of every batch one step normalises (BN's cumulative average weighs each
# forward pass alike): a concatenated pass counts ½, a source-only pass 1, a target-only 0.
SOURCE_SHARE = {
    "dann": 0.5, "mdd": 0.5, "mcd_joint": 0.5, "dwl_joint": 0.5,  # every pass concatenated
    "mcd": 1.5 / 6,  # A the source, B both, C (num_k = 4) the target
    "dwl": 3.5 / 6,  # 1 the source twice; 2, 4 and 6 both; 5 the target
}


@pytest.mark.parametrize("method", list(SOURCE_SHARE))
def test_target_batches_reach_the_generators_batchnorm_statistics(method, one_thread):
    """With the BN generator, a method's step normalises target images too, so G's running
    statistics blend the target's in; source only's are the source's alone. ``forward:
    joint`` makes every pass a mixed batch."""
    batch = first_batch(experiment(["domain.backbone=mcd_digits"]))
    torch.manual_seed(0)
    running, mean_s, mean_t = _first_bn_after_a_step("source_only", batch)
    assert torch.allclose(running, mean_s, atol=1e-5)
    joint = ["domain.method.forward=joint"] if method.endswith("_joint") else []
    running, mean_s, mean_t = _first_bn_after_a_step(method.removesuffix("_joint"), batch, joint)
    d = mean_s - mean_t
    alpha = ((running - mean_t) @ d / (d @ d)).item()  # running = α·source + (1 − α)·target
    assert torch.allclose(running, alpha * mean_s + (1 - alpha) * mean_t, atol=1e-4)
    assert alpha == pytest.approx(SOURCE_SHARE[method], abs=1e-4)


@pytest.mark.parametrize("forward", ["separate", "joint"])
def test_mcd_step_a_loss_by_hand(forward, one_thread, monkeypatch):
    """Step A is CE(F1(f_s)) + CE(F2(f_s)); with ``forward: joint`` (tllib) G sees both domains
    at once and the loss adds entropy_weight · [H(F1(f_t)) + H(F2(f_t))]."""
    from mtl_platform_plugins.domains.uda.methods import mcd as mcd_module
    from mtl_platform_plugins.domains.uda.methods.classifiers import entropy

    exp = experiment(["domain.method.name=mcd", f"domain.method.forward={forward}",
                      "domain.method.entropy_weight=0.5", "domain.backbone=mcd_digits"])
    for m in exp.model.modules():  # no dropout: the hand computation sees the same network
        if isinstance(m, nn.Dropout):
            m.p = 0.0
    xs, ys, xt, progress = batch = first_batch(exp)
    model = copy.deepcopy(exp.model).train()
    heads, n = model.heads["classification"], len(xs)
    if forward == "joint":
        y1, y2 = heads.all(model.encoder(torch.cat([xs, xt])))
        expected = (F.cross_entropy(y1[:n], ys) + F.cross_entropy(y2[:n], ys)
                    + 0.5 * (entropy(y1[n:]) + entropy(y2[n:])))
    else:
        y1, y2 = heads.all(model.encoder(xs))
        expected = F.cross_entropy(y1, ys) + F.cross_entropy(y2, ys)
    seen = []
    real = mcd_module.partial_step

    def spy(model, optimizers, loss, *args, **kwargs):
        seen.append(loss)
        return real(model, optimizers, loss, *args, **kwargs)

    monkeypatch.setattr(mcd_module, "partial_step", spy)
    exp.domain.train_step(batch, exp.model, exp.engine, exp.optimizers)
    assert len(seen) == 1 + 1 + 4
    assert seen[0].item() == pytest.approx(expected.item(), rel=1e-5)


@pytest.mark.parametrize("backbone", ["lenet", "mcd_digits"])
def test_digit_generators_refuse_pretrained_weights_in_one_line(backbone):
    with pytest.raises(UserError, match=f"domain.pretrained: {backbone} has no pretrained weights"):
        experiment([f"domain.backbone={backbone}", "domain.pretrained=weights.pth"])


@pytest.mark.parametrize("depth", [1, 2])
def test_classifiers_have_depth_hidden_layers_each_with_batchnorm(depth):
    heads = Classifiers(20, 5, 16, count=2, depth=depth)
    for member in heads.members:
        linears = [m for m in member if isinstance(m, nn.Linear)]
        assert [(l.in_features, l.out_features) for l in linears] == [(20, 16)] + [(16, 16)] * (depth - 1) + [(16, 5)]
        assert sum(isinstance(m, nn.BatchNorm1d) for m in member) == depth
        assert sum(isinstance(m, nn.Dropout) for m in member) == depth
    heads.eval()  # no dropout: forward is the first classifier, all() every one of them
    x = torch.randn(4, 20)
    a, b = heads.all(x)
    assert a.shape == b.shape == (4, 5) and torch.equal(heads(x), a) and not torch.equal(a, b)
    assert not torch.equal(heads.members[0][1].weight, heads.members[1][1].weight)  # independent members


def test_mcd_depth_reaches_its_classifiers(one_thread):
    exp = experiment(["domain.method.name=mcd", "domain.method.depth=2"])
    for member in exp.model.heads["classification"].members:
        assert sum(isinstance(m, nn.Linear) for m in member) == 3


def test_mdd_mlp_classifier_has_the_adversarial_classifiers_form(one_thread):
    exp = experiment(["domain.method.name=mdd", "domain.method.classifier=mlp"])
    f, adv = exp.model.heads["classification"], exp.model.heads["alignment"]
    assert [p.shape for p in f.parameters()] == [p.shape for p in adv.parameters()]
    assert not any(torch.equal(a, b) for a, b in zip(f.parameters(), adv.parameters()))  # separately initialised
    linear = experiment(["domain.method.name=mdd"])
    assert isinstance(linear.model.heads["classification"], nn.Linear)
    with pytest.raises(UserError, match="classifier"):
        experiment(["domain.method.name=mdd", "domain.method.classifier=deep"])
