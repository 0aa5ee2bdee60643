"""The detection domain's loss terms (issue 21): each torchvision detector's loss dict grouped
into the configured tasks adds up to the detector's own total, the heads a task owns get no
gradient from the other task's losses, and the heads both tasks read are the ones documented."""
from __future__ import annotations

import pytest
import torch

from mtl_platform_plugins.domains.detection.detectors import BUILDERS, build_detector, family
from mtl_platform_plugins.domains.detection.grouping import LossGrouping
from mtl_platform_plugins.domains.detection.model import DetectorModel

NUM_CLASSES = 4  # three classes and the background


def batch(size: int):
    g = torch.Generator().manual_seed(0)
    images = [torch.rand(3, size, size, generator=g) for _ in range(2)]
    s = size / 64
    targets = [{"boxes": torch.tensor([[8.0, 8.0, 40.0, 44.0], [20.0, 30.0, 60.0, 62.0]]) * s,
                "labels": torch.tensor([1, 3])},
               {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}]  # no boxes: accepted
    return images, targets


def tiny(detector: str, grouping: str = "paper", space: str = "backbone") -> DetectorModel:
    torch.manual_seed(0)
    size = 300 if detector == "ssd300_vgg16" else 64
    net = build_detector(detector, NUM_CLASSES, size, backbone="resnet18", fpn_channels=32, head_convs=1)
    return DetectorModel(net, LossGrouping(family(detector), grouping), space).train()


CASES = [(d, g) for d in [*BUILDERS, "fasterrcnn", "retinanet", "fcos"] for g in ("paper", "each")]


@pytest.mark.parametrize("detector, grouping", [
    pytest.param(d, g, marks=pytest.mark.slow) if (d, g) == ("ssd300_vgg16", "each") else (d, g) for d, g in CASES])
def test_the_tasks_add_up_to_the_detectors_own_total(detector, grouping, one_thread):
    model = tiny(detector, grouping)
    images, targets = batch(300 if detector == "ssd300_vgg16" else 64)
    with torch.random.fork_rng():
        torch.manual_seed(1)  # Faster R-CNN samples proposals: the same draws for both forwards
        raw = model.raw_losses(images, targets)
    with torch.random.fork_rng():
        torch.manual_seed(1)
        grouped = model(images, targets)
    expected = {"paper": ["classification", "localisation"], "each": list(raw)}[grouping]
    assert list(grouped) == model.tasks and set(grouped) == set(expected)
    total = sum(raw.values())
    assert torch.isfinite(total)
    torch.testing.assert_close(sum(grouped.values()), total, rtol=1e-6, atol=1e-6)


def test_the_paper_grouping_of_each_detector_class():
    assert LossGrouping("fasterrcnn", "paper").task_of == {
        "loss_classifier": "classification", "loss_objectness": "classification",
        "loss_box_reg": "localisation", "loss_rpn_box_reg": "localisation"}
    assert LossGrouping("fcos", "paper").task_of == {
        "classification": "classification", "bbox_regression": "localisation", "bbox_ctrness": "localisation"}
    for name in ("retinanet", "ssd"):
        assert LossGrouping(name, "paper").task_of == {"classification": "classification",
                                                       "bbox_regression": "localisation"}


def test_an_unknown_loss_key_is_not_dropped():
    with pytest.raises(RuntimeError, match="unexpected losses"):
        LossGrouping("retinanet", "paper").group({"classification": torch.ones(()), "extra": torch.ones(())})


def _names(model, params) -> set[str]:
    ids = {id(p) for p in params}
    return {n for n, p in model.detector.named_parameters() if id(p) in ids}


@pytest.mark.parametrize("detector, grouping, common", [
    ("fasterrcnn", "paper", {"rpn.head.conv", "roi_heads.box_head"}),
    ("fasterrcnn", "each", {"rpn.head.conv", "roi_heads.box_head"}),
    ("retinanet", "paper", set()),
    ("ssdlite320_mobilenet_v3_large", "paper", set()),
    ("fcos", "paper", set()),
    ("fcos", "each", {"head.regression_head.conv"}),
])
def test_task_heads_get_no_gradient_from_the_other_tasks(detector, grouping, common, one_thread):
    model = tiny(detector, grouping)
    images, targets = batch(64)
    losses = model(images, targets)
    heads = {t: model.task_parameters(t) for t in model.tasks}
    assert all(heads.values())
    for t, loss in losses.items():
        others = [p for u in model.tasks if u != t for p in heads[u]]
        own = heads[t]
        grads = torch.autograd.grad(loss, others + own + model.shared_parameters(), retain_graph=True,
                                    allow_unused=True)
        foreign = grads[:len(others)]
        assert all(g is None or not g.any() for g in foreign), t
        assert any(g is not None and g.any() for g in grads[len(others):len(others) + len(own)]), t
        assert any(g is not None and g.any() for g in grads[len(others) + len(own):]), t  # the backbone
    named = _names(model, model.common_parameters())
    assert all(any(n.startswith(c + ".") for c in common) for n in named)
    assert all(any(n.startswith(c + ".") for n in named) for c in common)
    # every trainable parameter is in exactly one set
    sets = [model.shared_parameters(), model.common_parameters(), *heads.values()]
    ids = [id(p) for s in sets for p in s]
    assert len(ids) == len(set(ids)) == sum(1 for p in model.parameters() if p.requires_grad)


def test_the_gradient_space_is_the_backbone_and_neck_unless_shared_is_asked(one_thread):
    model = tiny("fasterrcnn")
    assert all(n.startswith("backbone.") for n in _names(model, model.shared_parameters()))
    assert any(n.startswith("backbone.fpn.") for n in _names(model, model.shared_parameters()))
    shared = tiny("fasterrcnn", space="shared")
    assert _names(shared, shared.common_parameters()) <= _names(shared, shared.shared_parameters())
    blocks = shared.parameter_blocks()
    assert [id(p) for b in blocks for p in b] == [id(p) for p in shared.shared_parameters()]
