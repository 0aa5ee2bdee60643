"""The detection domain end to end (issue 21): every weighting trains a few steps on a tiny
detector, evaluation reports the APs, the STL reference is the summed-loss detector, and bad
input is one line with exit code 2."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from mtl_platform import registry as registry_mod
from mtl_platform.batches import to_device
from mtl_platform.config import apply_overrides, resolve
from mtl_platform.errors import UserError
from mtl_platform.experiment import build_domain, build_experiment
from mtl_platform_plugins.domains.detection.metrics import METRIC_NAMES

from conftest import assert_one_line_error, assert_train_refuses, weighting_args
from test_cli import run_cli

ROOT = Path(__file__).resolve().parents[4]
CONFIG = ROOT / "configs" / "detection" / "digits.yaml"
TINY = ["domain.data.image_size=64", "domain.data.train_scenes=2", "domain.data.val_scenes=2",
        "domain.data.test_scenes=2", "domain.image_size=64", "domain.fpn_channels=32", "domain.head_convs=1",
        "domain.batch_size=2", "domain.eval_batch_size=2", "train.epochs=1", "train.device=cpu",
        "train.progress=false", "baselines.stl=false"]


def config(sets=()):
    registry, _ = registry_mod.load()
    raw, _ = apply_overrides(yaml.safe_load(CONFIG.read_text()), [*TINY, *sets])
    return resolve(raw, registry), registry


@pytest.fixture(scope="module")
def domain():
    cfg, registry = config()
    return build_domain(cfg, registry)


def test_the_loss_terms_and_the_evaluated_task(domain):
    assert domain.task_names == ["classification", "localisation"]
    assert domain.eval_tasks == ["detection"]
    assert list(domain.spec()["detection"]) == list(METRIC_NAMES)
    assert domain.spec()["detection"]["AP"]["in_delta_p"] and not domain.spec()["detection"]["AP50"]["in_delta_p"]


def test_every_weighting_trains_a_few_steps(domain, one_thread):
    registry, _ = registry_mod.load()
    for name in registry.names("weighting"):
        args = weighting_args(name, domain.task_names)
        cfg, _ = config([f"weighting={json.dumps({'name': name, **args})}"])
        if registry.get("weighting", name).cls.noop_reason(len(domain.task_names)):
            with pytest.raises(UserError, match="is a no-op.*domain.grouping: each"):
                build_experiment(cfg, registry, domain)
            continue
        exp = build_experiment(cfg, registry, domain)
        exp.model.train()
        shared = {id(p) for p in exp.model.shared_parameters()}
        start = {id(p): p.detach().clone() for p in exp.model.parameters()}
        for batch in domain.loaders("train", epoch=0):
            out = domain.train_step(to_device(batch, exp.device), exp.model, exp.engine, exp.optimizers)
            assert all(torch.isfinite(v) for v in out.losses.values()), name
        moved = {id(p) for p in exp.model.parameters() if not torch.equal(start[id(p)], p)}
        assert moved - shared, name  # the heads
        # the backbone, except under CoNAL's conflict rule, which zeroes the shared update from the
        # first conflicting block on (a correct answer on two steps of a random detector)
        assert moved & shared or name == "conal_conflict", name


def test_evaluation_reports_every_ap_over_the_split(domain, one_thread):
    cfg, registry = config()
    exp = build_experiment(cfg, registry, domain)
    metrics = domain.evaluate(exp.model, "test")
    assert list(metrics) == ["detection"] and list(metrics["detection"]) == list(METRIC_NAMES)
    assert all(0.0 <= v <= 1.0 for v in metrics["detection"].values())


@pytest.mark.parametrize("sets, pattern", [
    (["domain.detector=yolo"], r"domain.detector.*'yolo'"),
    (["architecture=mtan"], r"architecture 'mtan'.*use architecture: hps"),
    (["domain.detector=ssd300_vgg16"], r"domain.image_size: got 64; ssd300_vgg16"),
    (["domain.fpn_channels=48"], r"domain.fpn_channels: got 48.*multiple of 32"),
    (["domain.data={name: voc, root: /nonexistent/voc}"], r"/nonexistent/voc/VOCdevkit/VOC2007.*not found"),
    (["domain.data={name: coco, root: /nonexistent/coco}"], r"instances_train2017.json' not found"),
    (["domain.pretrained=/nonexistent/resnet18.pth"], r"domain.pretrained: weights file.*not found"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, sets, pattern):
    assert_train_refuses(config()[0], sets, tmp_path, capsys, pattern)


def test_local_pretrained_backbone_weights_are_loaded(tmp_path, one_thread):
    from torchvision.models import resnet18

    torch.manual_seed(5)
    weights = resnet18(weights=None).state_dict()
    path = tmp_path / "resnet18.pth"
    torch.save(weights, path)
    cfg, registry = config([f"domain.pretrained={path}"])
    domain = build_domain(cfg, registry)
    model = build_experiment(cfg, registry, domain).model
    torch.testing.assert_close(model.detector.backbone.body.conv1.weight, weights["conv1.weight"])


def test_a_torchvision_vgg16_file_loads_into_ssd300_across_its_split(tmp_path, one_thread):
    """SSD300 keeps VGG-16's layers after the fourth max-pool in ``backbone.extra.0``."""
    import torchvision

    from mtl_platform_plugins.domains.detection.detectors import build_detector, load_local_weights

    torch.manual_seed(0)
    net = torchvision.models.vgg16(weights=None)
    vgg = net.features
    path = tmp_path / "vgg16_features.pth"
    torch.save(net.state_dict(), path)  # keys as in torchvision's VGG files: features.K..., classifier...
    model = build_detector("ssd300_vgg16", 21)
    load_local_weights(model, str(path), "domain.pretrained")
    torch.testing.assert_close(model.backbone.features[0].weight, vgg[0].weight)
    torch.testing.assert_close(model.backbone.extra[0][1].weight, vgg[24].weight)  # conv5_1


def test_the_voc07_config_names_the_missing_data_in_one_line(tmp_path, capsys):
    path = ROOT / "configs" / "detection" / "voc07_ssd300.yaml"
    code, out, err = run_cli(["train", str(path), "--no-progress", "--set", f"domain.data.root={tmp_path}/voc",
                              "--set", f"output.root={tmp_path}/runs"], capsys)
    assert_one_line_error(code, out, err, r"VOCdevkit/VOC2007/Annotations' not found.*host.robots.ox.ac.uk")


@pytest.mark.parametrize("space", ["shared", "all"])
def test_the_wider_gradient_spaces_train(domain, space, one_thread):
    cfg, registry = config([f"domain.gradient_space={space}", "weighting=pcgrad"])
    exp = build_experiment(cfg, registry, build_domain(cfg, registry))
    exp.model.train()
    before = {n: p.detach().clone() for n, p in exp.model.named_parameters()}
    batch = to_device(next(iter(exp.domain.loaders("train"))), exp.device)
    out = exp.domain.train_step(batch, exp.model, exp.engine, exp.optimizers)
    assert all(torch.isfinite(v) for v in out.losses.values())
    moved = {n for n, p in exp.model.named_parameters() if not torch.equal(before[n], p)}
    assert any(n.startswith("detector.backbone.") for n in moved)
    assert any(n.startswith("detector.head.classification_head.") for n in moved)
    assert any(n.startswith("detector.head.regression_head.") for n in moved)


def test_the_stl_reference_run_is_the_summed_loss_detector(one_thread):
    """What ``baselines.ensure_baseline`` builds for the evaluated task ``detection``."""
    from mtl_platform.baselines import stl_config
    from mtl_platform_plugins.domains.detection.domain import Detection

    cfg, registry = config(["weighting=gh", "baselines.stl=true"])
    stl = stl_config(cfg, "detection", registry)
    stl["domain"] = Detection.stl_domain_config(stl["domain"])
    exp = build_experiment(stl, registry)
    assert exp.domain.task_names == ["classification", "localisation"] and exp.weighting.name == "ew"


@pytest.mark.parametrize("detector, owner", [("fcos", ""), ("fasterrcnn", "roi_heads")])
def test_score_thresh_reaches_the_detectors_postprocessing(detector, owner, one_thread):
    cfg, registry = config([f"domain.detector={detector}", "domain.score_thresh=0.01"])
    model = build_experiment(cfg, registry, build_domain(cfg, registry)).model
    target = getattr(model.detector, owner) if owner else model.detector
    assert target.score_thresh == 0.01


def test_a_closure_method_steps_the_detector(one_thread):
    """SAM re-evaluates the grouped losses at perturbed weights through the domain's closure."""
    cfg, registry = config(["closure=sam"])
    exp = build_experiment(cfg, registry, build_domain(cfg, registry))
    exp.model.train()
    before = [p.detach().clone() for p in exp.model.shared_parameters()]
    batch = to_device(next(iter(exp.domain.loaders("train"))), exp.device)
    out = exp.closure.step(exp.domain.closure(batch, exp.model), exp.engine, exp.optimizers)
    assert all(torch.isfinite(v) for v in out.losses.values())
    assert any(not torch.equal(a, b) for a, b in zip(before, exp.model.shared_parameters()))
