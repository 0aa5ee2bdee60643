"""GVB-GD (Cui et al., CVPR 2020; plugins/domains/uda/methods/gvb.py): each loss term against a
hand computation, the reversal on the entropy weights, which parameters each task reaches,
the bridges switched off, and every weighting training it for a few steps."""
import json
import math

import pytest
import torch
import torch.nn.functional as F

from mtl_platform.contracts import Needs
from mtl_platform_plugins.domains.uda.methods.gradient_reversal import grl_coefficient, reverse_gradient
from mtl_platform_plugins.domains.uda.methods.gvb import (BridgedClassifier, entropy_weights, shannon_entropy,
                                                          transfer_loss)

from conftest import weighting_args
from test_uda import REG, experiment, first_batch, weightings

pytestmark = pytest.mark.usefixtures("one_thread")


def test_entropy_and_its_weights_by_hand():
    p = torch.tensor([[0.5, 0.5], [1.0, 0.0], [0.9, 0.1], [0.2, 0.8]])
    h = shannon_entropy(p)
    by_hand = [-(0.5 * math.log(0.5 + 1e-5)) * 2, -(1.0 * math.log(1.0 + 1e-5)),
               -(0.9 * math.log(0.9 + 1e-5) + 0.1 * math.log(0.1 + 1e-5)),
               -(0.2 * math.log(0.2 + 1e-5) + 0.8 * math.log(0.8 + 1e-5))]
    assert h.tolist() == pytest.approx(by_hand, rel=1e-6, abs=1e-7)
    w = entropy_weights(h, 2)  # source: rows 0, 1; target: rows 2, 3
    e = [math.exp(-v) for v in by_hand]
    assert w.tolist() == pytest.approx([e[0] / (e[0] + e[1]), e[1] / (e[0] + e[1]),
                                        e[2] / (e[2] + e[3]), e[3] / (e[2] + e[3])], rel=1e-6)


def test_transfer_loss_by_hand_with_and_without_the_discriminator_bridge():
    logit, bridge = torch.tensor([0.3, -1.2, 2.0]), torch.tensor([0.5, 0.1, -0.4])
    w = torch.tensor([1.0, 0.25, 0.75])  # one source sample, two target samples
    sig = lambda z: 1 / (1 + math.exp(-z))  # noqa: E731
    z = [0.3 - 0.5, -1.2 - 0.1, 2.0 + 0.4]
    by_hand = (1.0 * -math.log(sig(z[0])) + 0.25 * -math.log(1 - sig(z[1])) + 0.75 * -math.log(1 - sig(z[2]))) / 2
    assert transfer_loss(logit, bridge, w, 1).item() == pytest.approx(by_hand, rel=1e-6)
    plain = (1.0 * -math.log(sig(0.3)) + 0.25 * -math.log(1 - sig(-1.2)) + 0.75 * -math.log(1 - sig(2.0))) / 2
    assert transfer_loss(logit, None, w, 1).item() == pytest.approx(plain, rel=1e-6)


def test_the_entropy_weights_pass_the_gradient_back_reversed():
    """The code's ``grl_hook`` on the entropy: the weights' gradient reaches p times −coeff."""
    p = torch.tensor([[0.6, 0.4], [0.3, 0.7], [0.8, 0.2], [0.5, 0.5]], requires_grad=True)
    bce = torch.tensor([0.7, 0.2, 1.1, 0.4])
    grads = []
    for reverse in (False, True):
        h = shannon_entropy(p)
        w = entropy_weights(reverse_gradient(h, 0.3) if reverse else h, 2)
        grads.append(torch.autograd.grad((w * bce).sum(), p)[0])
    assert torch.allclose(grads[1], -0.3 * grads[0], atol=1e-7)
    assert grads[0].abs().sum() > 0


def test_the_classifier_subtracts_the_generator_bridge():
    head = BridgedClassifier(5, 3)
    f = torch.randn(4, 5)
    y, bridge = head.parts(f)
    assert torch.allclose(y, head.fc(f) - head.bridge(f)) and torch.allclose(bridge, head.bridge(f))
    assert torch.equal(head(f), y)
    off = BridgedClassifier(5, 3, bridged=False)
    assert torch.equal(off(f), off.fc(f))


def test_the_tasks_equal_the_weighted_terms_computed_by_hand():
    exp = experiment(["domain.method.name=gvb", "domain.method.trade_off=0.7",
                      "domain.method.generator_bridge=0.3", "domain.method.discriminator_bridge=0.2"])
    model, domain = exp.model, exp.domain
    model.eval()  # no dropout: the hand computation sees the same network
    xs, ys, xt, _ = first_batch(exp)
    progress = torch.tensor(0.4)
    got = domain.losses((xs, ys, xt, progress), model)
    head, disc = model.heads["classification"], model.heads["alignment"]
    with torch.no_grad():
        fs, ft = model.encoder(xs), model.encoder(xt)
        ys_, bs = head.fc(fs) - head.bridge(fs), head.bridge(fs)
        yt_, bt = head.fc(ft) - head.bridge(ft), head.bridge(ft)
        p = torch.cat([ys_, yt_]).softmax(1)
        hidden = disc.body(p)
        z = disc.logit(hidden).squeeze(1) - disc.bridge(hidden).squeeze(1)
        e = torch.exp((p * torch.log(p + 1e-5)).sum(1))
        n = len(xs)
        w = torch.cat([e[:n] / e[:n].sum(), e[n:] / e[n:].sum()])
        d = torch.cat([torch.ones(n), torch.zeros(len(xt))])
        adv = (w * -(d * torch.log(torch.sigmoid(z)) + (1 - d) * torch.log(1 - torch.sigmoid(z)))).sum() / 2
        gvbg = torch.cat([bs, bt]).abs().mean()
        gvbd = disc.bridge(hidden).abs().mean()
        cls = F.cross_entropy(ys_, ys)
    assert got["classification"].item() == pytest.approx(cls.item(), rel=1e-5)
    assert got["alignment"].item() == pytest.approx((0.7 * adv + 0.3 * gvbg + 0.2 * gvbd).item(), rel=1e-5)


def test_what_each_task_reaches():
    """Classification reaches no discriminator parameter (nor its bridge); alignment reaches the
    discriminator, its bridge, G, C and the generator's bridge; the default gradient space is
    G + C with the generator bridge, never D."""
    exp = experiment(["domain.method.name=gvb"])
    model = exp.model
    xs, ys, xt, _ = first_batch(exp)
    losses = exp.domain.losses((xs, ys, xt, torch.tensor(1.0)), model)
    head, disc = model.heads["classification"], model.heads["alignment"]
    d_params = list(disc.parameters())
    grads = torch.autograd.grad(losses["classification"], d_params, allow_unused=True, retain_graph=True)
    assert all(g is None or g.abs().sum() == 0 for g in grads)
    parts = {"G": list(model.encoder.parameters()), "C": list(head.fc.parameters()),
             "B_G": list(head.bridge.parameters()), "D": list(disc.body.parameters()) + list(disc.logit.parameters()),
             "B_D": list(disc.bridge.parameters())}
    for name, params in parts.items():
        g = torch.autograd.grad(losses["alignment"], params, retain_graph=True, allow_unused=True)
        assert sum(x.abs().sum() for x in g if x is not None) > 0, name
    space = {id(p) for p in exp.model.heads["classification"].parameters()} | {id(p) for p in parts["G"]}
    assert {id(p) for p in exp.domain.method.gradient_space(model)} == space
    assert not space & {id(p) for p in d_params}


def test_the_generator_gets_the_adversarial_gradient_scaled_by_the_schedule():
    """Through both reversals (on p and on the entropy), G's gradient of the adversarial term is
    −λ_p times the unreversed one: the two progress values' gradients are in the ratio λ_a : λ_b."""
    exp = experiment(["domain.method.name=gvb", "domain.method.generator_bridge=0",
                      "domain.method.discriminator_bridge=0"])
    model = exp.model
    model.eval()
    xs, ys, xt, _ = first_batch(exp)
    enc = list(model.encoder.parameters())
    a, b = (torch.autograd.grad(exp.domain.losses((xs, ys, xt, torch.tensor(t)), model)["alignment"], enc)
            for t in (0.1, 0.6))
    lam_a, lam_b = grl_coefficient(0.1).item(), grl_coefficient(0.6).item()
    for ga, gb in zip(a, b):
        assert torch.allclose(ga * lam_b, gb * lam_a, atol=1e-6)


def test_without_bridges_the_alignment_is_the_adversarial_loss_alone():
    exp = experiment(["domain.method.name=gvb", "domain.method.generator_bridge=0",
                      "domain.method.discriminator_bridge=0"])
    model = exp.model
    model.eval()
    xs, ys, xt, _ = first_batch(exp)
    batch = (xs, ys, xt, torch.tensor(0.5))
    got = exp.domain.losses(batch, model)["alignment"]
    terms = exp.domain.method.terms(model, *batch)
    assert got.item() == pytest.approx(terms["adversarial"].item(), rel=1e-6)
    head = model.heads["classification"]
    f = model.encoder(xs)
    assert torch.equal(head(f), head.fc(f))  # GVB-G off: C alone


def test_every_weighting_trains_gvb_for_a_few_steps():
    for name in weightings():
        args = [f"weighting.{k}={json.dumps(v)}" for k, v in
                weighting_args(name, ["alignment", "classification"]).items()]
        exp = experiment(["domain.method.name=gvb", f"weighting.name={name}", *args])
        before = [p.detach().clone() for p in exp.model.encoder.parameters()]
        for batch in exp.domain.loaders("train", epoch=0):
            losses = exp.domain.train_step(batch, exp.model, exp.engine, exp.optimizers).losses
            assert all(torch.isfinite(v) for v in losses.values()), name
        assert any(not torch.equal(a, b) for a, b in zip(before, exp.model.encoder.parameters())), name
        assert REG.get("weighting", name).cls.needs in tuple(Needs)


def test_bottleneck_zero_gives_the_pooled_resnet_features_as_gvbs_code():
    from mtl_platform_plugins.domains.uda.backbones import resnet_generator

    g = resnet_generator(50, 32, 0, None, width=8)
    assert g.out_shape == (8 * 32,) and not any(isinstance(m, torch.nn.Linear) for m in g.stages[-1].modules())
    assert g(torch.randn(2, 3, 32, 32)).shape == (2, 256)
    assert resnet_generator(50, 32, 16, None, width=8).out_shape == (16,)
