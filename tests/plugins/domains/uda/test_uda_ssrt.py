"""SSRT (Sun et al., CVPR 2022; plugins/domains/uda/methods/ssrt.py, self_refinement.py,
safe_training.py) on a tiny ViT built in the test: the self-refinement terms against hand
computations, the safe-training checks and its restart on a forced collapse, which parameters
each task reaches, every weighting for a few steps, and the ViT weights file."""
import json
import math

import pytest
import torch
import torch.nn.functional as F
import yaml

from mtl_platform.errors import UserError
from mtl_platform_plugins.domains.uda.methods.safe_training import SafeTraining, chunk_means, diversity_dropped
from mtl_platform_plugins.domains.uda.methods.self_refinement import (distinct_classes, perturb, perturbed_features,
                                                                      refinement_loss)

from conftest import weighting_args
from test_uda import CONFIG, TINY, experiment, first_batch, weightings

pytestmark = pytest.mark.usefixtures("one_thread")

# a ViT-B/16 in miniature (28-px digits, 7-px patches: 16 tokens + the class token; 2 blocks)
TINY_VIT = ["domain.backbone=vit_b_16", "domain.vit.width=32", "domain.vit.layers=2", "domain.vit.heads=2",
            "domain.vit.mlp=64", "domain.vit.patch=7", "domain.bottleneck=32"]
SSRT = ["domain.method.name=ssrt", "domain.method.sr_layers=[-1,0,1]", *TINY_VIT]


def test_refinement_loss_by_hand_in_both_directions():
    clean = torch.tensor([[2.0, 0.0, 0.0], [0.1, 0.0, 0.2], [0.0, 3.0, 1.0]])
    pert = torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 2.0]])

    def kl(a, b):
        p, q = a.softmax(0).tolist(), b.softmax(0).tolist()
        return sum(x * (math.log(x) - math.log(y)) for x, y in zip(p, q))

    def masked(a_rows, b_rows, eps):
        mask = [float(r.softmax(0).max() > eps) for r in a_rows]
        return sum(m * kl(a, b) for m, a, b in zip(mask, a_rows, b_rows)) / (sum(mask) + 1e-6)

    for eps in (0.4, 0.7):
        assert refinement_loss(clean, pert, eps, True).item() == pytest.approx(masked(clean, pert, eps), rel=1e-5)
        assert refinement_loss(clean, pert, eps, False).item() == pytest.approx(masked(pert, clean, eps), rel=1e-5)
    # row 1 of clean is not confident at 0.4 (max p ≈ 0.37): it is masked out
    assert refinement_loss(clean[1:2], pert[1:2], 0.4, True).item() == 0.0


def test_the_perturbation_moves_each_target_towards_the_reversed_target_without_gradient():
    h = torch.tensor([[9.0], [1.0], [2.0], [4.0]], requires_grad=True)  # one source, three target rows
    out = perturb(h, 1, 0.25)
    assert out.tolist() == [[1 + 0.25 * (4 - 1)], [2.0], [4 + 0.25 * (1 - 4)]]
    out.sum().backward()
    assert h.grad.tolist() == [[0.0], [1.0], [1.0], [1.0]]  # the offset carries no gradient


def test_perturbed_features_perturb_the_chosen_stage_output():
    exp = experiment(SSRT)
    encoder = exp.model.encoder
    exp.model.eval()
    xs, _, xt, _ = first_batch(exp)
    x, n = torch.cat([xs, xt]), len(xs)
    with torch.no_grad():
        clean = encoder(x)
        for layer in (-1, 0, 1):
            f = perturbed_features(encoder, x, n, layer, 0.3)
            assert torch.allclose(f[:len(x)], clean, atol=1e-6)  # the clean batch is unchanged
            h = x if layer == -1 else None
            if layer >= 0:
                h = x
                for stage in encoder.stages[:layer + 1]:
                    h = stage(h)
            t = h[n:] + 0.3 * (h[n:].flip(0) - h[n:])
            for stage in encoder.stages[layer + 1:]:
                t = stage(t)
            assert torch.allclose(f[len(x):], t, atol=1e-5), layer
        assert not torch.allclose(perturbed_features(encoder, x, n, 0, 0.3)[len(x):], clean[n:], atol=1e-3)


def test_distinct_classes_counts_the_predicted_classes():
    logits = torch.tensor([[3.0, 0, 0, 0], [0, 2.0, 0, 0], [5.0, 0, 0, 1.0]])
    assert distinct_classes(logits).item() == 2.0


def test_chunk_means_split_as_array_split_and_the_drop_check():
    assert chunk_means([1, 2, 3, 4, 5], 2) == [2.0, 4.5]  # [1, 2, 3] [4, 5]
    assert chunk_means([1, 2, 3], 4) == [1.0, 2.0, 3.0]  # empty chunks left out
    assert diversity_dropped([5, 5, 5, 3], None, 2)  # quarters: 5 5 5 3 — a drop of 2
    assert not diversity_dropped([5, 5, 5, 4.5], None, 2)
    assert not diversity_dropped([5, 5, 4.5, 4.5], None, 0)  # one chunk: nothing to compare
    assert diversity_dropped([3, 3, 3, 3], [6, 6, 6, 6], 0)  # against the previous interval's last chunk
    assert not diversity_dropped([3, 3, 3, 3], None, 3)


def test_the_strength_ramps_as_a_sine_from_the_phase_over_the_period():
    safe = SafeTraining(interval=8, scales=1)
    assert [safe.strength(i) for i in (0, 4, 8, 20)] == pytest.approx([0.0, math.sin(math.pi / 4), 1.0, 1.0])
    safe._set(phase=10, period=16)
    assert safe.strength(14) == pytest.approx(math.sin(4 / 16 * math.pi / 2))


def collapse_run(monkeypatch, restore_weights=True, collapse=True):
    """SSRT with T = 4, L = 1 for five steps at a negligible lr (the diversity then moves only with
    the batch, by less than the check's one class, unless forced); after two steps the classifier is forced to predict
    class 0 for every sample (a collapse of the prediction diversity). Returns the experiment,
    the weights at the start of step 0 and at the start of step 4 (after safe training's begin),
    and the diversities recorded."""
    sets = [*SSRT, "domain.method.safe_interval=4", "domain.method.safe_scales=1",
            f"domain.method.restore_weights={str(restore_weights).lower()}", "domain.batch_size=32",
            "domain.iterations=5", "domain.data.train_per_domain=128", "optimizer.lr=1.0e-9"]
    exp = experiment(sets)
    safe = exp.model.heads["alignment"].safe
    seen = {}
    real_begin = safe.begin

    def begin(model):
        restored = real_begin(model)
        seen[safe.host()["iteration"]] = [p.detach().clone() for p in model.parameters()]
        return restored

    monkeypatch.setattr(safe, "begin", begin)
    last = exp.model.heads["classification"][3]
    for i, batch in enumerate(exp.domain.loaders("train", epoch=0)):
        if i == 2 and collapse:
            with torch.no_grad():
                last.bias[0] = 1.0e4
        exp.domain.train_step(batch, exp.model, exp.engine, exp.optimizers)
    return exp, seen, safe


def test_safe_training_restarts_on_a_forced_collapse(monkeypatch):
    exp, seen, safe = collapse_run(monkeypatch)
    divs = safe.last_divs.tolist() if safe.host()["has_last"] else None
    assert divs is None  # the interval with the collapse is not kept as the reference
    assert safe.restores == 1
    h = safe.host()
    assert h["phase"] == 3 and h["period"] == 8 and h["last_restore"] == 4 and h["iteration"] == 5
    # at step 4 the model is back at the interval's snapshot: the weights before step 0
    assert all(torch.equal(a, b) for a, b in zip(seen[0], seen[4]))
    assert exp.model.heads["classification"][3].bias[0] < 100  # the forced collapse is undone
    assert exp.domain.method.strength(safe, 4) == pytest.approx(math.sin(1 / 8 * math.pi / 2))


def test_without_a_collapse_nothing_restarts(monkeypatch):
    exp, seen, safe = collapse_run(monkeypatch, collapse=False)
    assert safe.restores == 0 and safe.host()["phase"] == 0 and safe.host()["has_last"] == 1
    assert min(safe.last_divs.tolist()) >= 3  # the tiny model's predictions are diverse: the test can fail
    assert not all(torch.equal(a, b) for a, b in zip(seen[0], seen[4]))


def test_restore_weights_false_restarts_only_the_ramp_as_the_published_code(monkeypatch):
    exp, seen, safe = collapse_run(monkeypatch, restore_weights=False)
    assert safe.restores == 1 and safe.host()["phase"] == 3
    assert exp.model.heads["classification"][3].bias[0] > 100  # the weights were left as they were


def test_the_safe_training_state_is_checkpointed_with_the_model():
    exp = experiment(SSRT)
    keys = exp.model.state_dict().keys()
    for name in ("iteration", "phase", "period", "last_restore", "pending", "divs", "last_divs", "has_last"):
        assert f"heads.alignment.safe.{name}" in keys


def test_the_tasks_equal_the_weighted_terms_by_hand():
    exp = experiment([*SSRT, "domain.method.safe_training=false", "domain.method.sr_weight=0.5",
                      "domain.method.domain_weight=0.7", "domain.method.classification_weight=1.5",
                      "domain.method.sr_epsilon=0.0"])
    model, method = exp.model, exp.domain.method
    model.eval()
    xs, ys, xt, _ = first_batch(exp)
    got = exp.domain.losses((xs, ys, xt, torch.tensor(1.0)), model)
    layer, clean_first = method.draws(0)
    n, m = len(xs), len(xs) + len(xt)
    with torch.no_grad():
        f = perturbed_features(model.encoder, torch.cat([xs, xt]), n, layer, 0.3)
        logits = model.heads["classification"](f)
        d = model.heads["alignment"](f[:m])
        dom = 2 * F.binary_cross_entropy(torch.sigmoid(d), torch.cat([torch.ones(n), torch.zeros(m - n)]))
        a, b = (logits[n:m], logits[m:]) if clean_first else (logits[m:], logits[n:m])
        kl = (a.softmax(1) * (a.log_softmax(1) - b.log_softmax(1))).sum(1).mean()
        cls = F.cross_entropy(logits[:n], ys)
    assert got["classification"].item() == pytest.approx(1.5 * cls.item(), rel=1e-5)
    assert got["alignment"].item() == pytest.approx((0.7 * dom + 0.5 * kl).item(), rel=1e-4)


def test_the_draws_are_a_function_of_seed_and_iteration():
    method = experiment(SSRT).domain.method
    draws = [method.draws(i) for i in range(40)]
    assert draws == [method.draws(i) for i in range(40)]
    assert {layer for layer, _ in draws} == {-1, 0, 1} and {d for _, d in draws} == {True, False}


def test_what_each_task_reaches():
    # r = 1 (no ramp) and every sample in the refinement mask, so L_sr is in the alignment task
    exp = experiment([*SSRT, "domain.method.safe_training=false", "domain.method.sr_epsilon=0"])
    model = exp.model
    xs, ys, xt, _ = first_batch(exp)
    losses = exp.domain.losses((xs, ys, xt, torch.tensor(1.0)), model)
    disc = list(model.heads["alignment"].parameters())
    grads = torch.autograd.grad(losses["classification"], disc, allow_unused=True, retain_graph=True)
    assert all(g is None or g.abs().sum() == 0 for g in grads)
    for params in (disc, list(model.encoder.parameters()), list(model.heads["classification"].parameters())):
        g = torch.autograd.grad(losses["alignment"], params, retain_graph=True, allow_unused=True)
        assert sum(x.abs().sum() for x in g if x is not None) > 0  # D, G and (through L_sr) C
    space = exp.domain.method.gradient_space(model)
    assert not {id(p) for p in space} & {id(p) for p in disc}


def test_a_layer_past_the_generator_is_refused():
    exp = experiment([*SSRT, "domain.method.sr_layers=[0,4,8]"])
    with pytest.raises(UserError, match=r"domain.method.sr_layers: 4 is past the generator's last block; "
                                        r"allowed -1 \(the images\) … 2"):
        exp.domain.train_step(first_batch(exp), exp.model, exp.engine, exp.optimizers)


def test_every_weighting_trains_ssrt_for_a_few_steps():
    for name in weightings():
        args = [f"weighting.{k}={json.dumps(v)}" for k, v in
                weighting_args(name, ["alignment", "classification"]).items()]
        exp = experiment([*SSRT, f"weighting.name={name}", *args])
        before = [p.detach().clone() for p in exp.model.encoder.parameters()]
        for batch in exp.domain.loaders("train", epoch=0):
            losses = exp.domain.train_step(batch, exp.model, exp.engine, exp.optimizers).losses
            assert all(torch.isfinite(v) for v in losses.values()), name
        assert any(not torch.equal(a, b) for a, b in zip(before, exp.model.encoder.parameters())), name


def test_vit_weights_load_from_a_local_file(tmp_path):
    from torchvision.models.vision_transformer import VisionTransformer

    vit = VisionTransformer(image_size=28, patch_size=7, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64)
    path = tmp_path / "vit.pt"
    torch.save(vit.state_dict(), path)
    exp = experiment([*SSRT, f"domain.pretrained={path}", "domain.data.channels=3"])
    stages = exp.model.encoder.stages
    assert torch.equal(stages[0].conv_proj.weight, vit.conv_proj.weight)
    assert torch.equal(stages[2].mlp[0].weight, vit.encoder.layers[1].mlp[0].weight)
    assert torch.equal(stages[0].pos_embedding, vit.encoder.pos_embedding)


@pytest.mark.parametrize("sets, message", [
    (["domain.pretrained=/nonexistent/vit_b_16.pth"], "domain.pretrained: no ViT weights file "
                                                      "'/nonexistent/vit_b_16.pth'"),
    (["domain.pretrained=ViT_B_16_Weights.IMAGENET1K_V1"], "domain.pretrained: no ViT weights file"),
    (["domain.vit.patch=5"], "domain.vit.patch: the image side 28 is not a multiple of the patch size 5"),
])
def test_bad_vit_input_is_one_line_and_exit_2(tmp_path, capsys, sets, message):
    from mtl_platform.cli import main

    argv = [*TINY, *SSRT, "domain.method.hidden=32", *sets, f"output.root={tmp_path / 'runs'}"]
    with pytest.raises(SystemExit) as exit_:
        main(["train", str(CONFIG), *(a for s in argv for a in ("--set", s))])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert err.startswith("mtl: error: ") and message in err, err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_a_resolved_config_keeps_the_vit_section():
    from mtl_platform import registry as registry_mod
    from mtl_platform.config import apply_overrides, resolve

    reg, _ = registry_mod.load()
    raw, _ = apply_overrides(yaml.safe_load(CONFIG.read_text()), [*TINY, *SSRT])
    cfg = resolve(raw, reg)
    assert cfg["domain"]["vit"] == {"width": 32, "layers": 2, "heads": 2, "mlp": 64, "patch": 7}
