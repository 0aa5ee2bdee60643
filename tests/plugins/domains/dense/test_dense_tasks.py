"""The dense domain's pixel-wise task kinds: losses and split-level metrics, checked by hand."""
from __future__ import annotations

import math

import pytest
import torch

from mtl_platform_plugins.domains.dense.tasks import (DepthTask, NormalTask, PixelL1Task,
                                                      SaliencyTask, SegmentationTask)

pytestmark = pytest.mark.usefixtures("one_thread")


def accumulate(task, batches):
    """What the domain does: add every batch's metric_sums up, key by key."""
    sums = {}
    for pred, target in batches:
        for key, value in task.metric_sums(pred, target).items():
            sums[key] = sums[key] + value if key in sums else value
    return sums


def evaluate(task, batches):
    return task.finalize(accumulate(task, batches))


def one_hot_logits(classes, num_classes, scale=5.0):
    """Logits (B, C, H, W): ``scale`` at the given class, 0 elsewhere."""
    classes = torch.as_tensor(classes)
    return torch.nn.functional.one_hot(classes, num_classes).permute(0, 3, 1, 2).float() * scale


# -- segmentation ----------------------------------------------------------------------------

SEG_TARGET = torch.tensor([[[0, 0, 1], [1, -1, 0]]])
# the ignored pixel predicts class 3, which is otherwise absent: it must not enter the union
SEG_PRED = torch.tensor([[[0, 1, 1], [2, 3, 0]]])


def test_segmentation_miou_ignores_pixels_and_absent_classes():
    task = SegmentationTask("seg", num_classes=4)
    sums = task.metric_sums(one_hot_logits(SEG_PRED, 4), SEG_TARGET)
    # valid (target, pred): (0,0) (0,1) (1,1) (1,2) (0,0)
    expected = torch.zeros(4, 4, dtype=torch.long)
    expected[0, 0], expected[0, 1], expected[1, 1], expected[1, 2] = 2, 1, 1, 1
    assert torch.equal(sums["confusion"], expected)
    assert int(sums["count"]) == 5
    out = task.finalize(sums)
    # class 0: TP 2, union 3 + 2 - 2 = 3; class 1: TP 1, union 2 + 2 - 1 = 3;
    # class 2 (predicted only): IoU 0, included; class 3 (absent): excluded
    assert out["miou"] == pytest.approx((2 / 3 + 1 / 3 + 0) / 3)
    assert out["pixel_accuracy"] == pytest.approx(3 / 5)
    big = math.log(math.exp(5) + 3)  # log-sum-exp of one logit 5 and three 0
    ce = (3 * (big - 5) + 2 * big) / 5  # 3 correct, 2 wrong pixels
    assert out["loss"] == pytest.approx(ce, rel=1e-5)
    assert task.loss(one_hot_logits(SEG_PRED, 4), SEG_TARGET).item() == pytest.approx(ce, rel=1e-5)


def test_segmentation_sums_over_batches_not_averaged_ratios():
    task = SegmentationTask("seg", num_classes=2)
    pred_a, target_a = one_hot_logits([[[0, 1]]], 2), torch.tensor([[[0, -1]]])
    pred_b, target_b = one_hot_logits([[[0, 0]]], 2), torch.tensor([[[1, 1]]])
    split = evaluate(task, [(pred_a, target_a), (pred_b, target_b)])
    # valid (target, pred): (0,0) (1,0) (1,0); per-batch accuracies 1 and 0 would average 0.5
    assert split["pixel_accuracy"] == pytest.approx(1 / 3)
    # class 0: TP 1, union 3; class 1: TP 0, union 2 (per-batch mIoUs 1 and 0 average 0.5)
    assert split["miou"] == pytest.approx((1 / 3 + 0) / 2)
    both = (torch.cat([pred_a, pred_b]), torch.cat([target_a, target_b]))
    one = task.metric_sums(*both)
    two = accumulate(task, [(pred_a, target_a), (pred_b, target_b)])
    assert torch.equal(one["confusion"], two["confusion"])
    assert torch.equal(one["count"], two["count"])
    assert torch.allclose(one["ce"], two["ce"])
    assert task.finalize(one) == pytest.approx(split)


def test_segmentation_pixel_error_is_one_minus_accuracy():
    accuracy = SegmentationTask("seg", 4)
    error = SegmentationTask("seg", 4, pixel_metric="error")
    assert [m.name for m in error.metrics] == ["miou", "pixel_error", "loss"]
    assert error.spec()["pixel_error"] == {"higher_is_better": False, "in_delta_p": True}
    assert accuracy.spec()["pixel_accuracy"] == {"higher_is_better": True, "in_delta_p": True}
    assert error.spec()["loss"] == {"higher_is_better": False, "in_delta_p": False}
    batch = [(one_hot_logits(SEG_PRED, 4), SEG_TARGET)]
    assert evaluate(error, batch)["pixel_error"] == pytest.approx(2 / 5)
    assert evaluate(error, batch)["pixel_error"] == pytest.approx(
        1 - evaluate(accuracy, batch)["pixel_accuracy"])
    with pytest.raises(ValueError, match="pixel_metric"):
        SegmentationTask("seg", 4, pixel_metric="percent")


def test_segmentation_all_ignored_batch_has_zero_loss_with_grad():
    task = SegmentationTask("seg", 3, ignore_index=255)
    pred = torch.randn(1, 3, 2, 2, requires_grad=True)
    loss = task.loss(pred, torch.full((1, 2, 2), 255))
    assert loss.item() == 0.0 and loss.grad_fn is not None
    loss.backward()
    assert torch.equal(pred.grad, torch.zeros_like(pred))


def test_tasks_reject_predictions_at_another_resolution():
    with pytest.raises(ValueError):
        SegmentationTask("seg", 3).loss(torch.randn(1, 3, 4, 4), torch.zeros(1, 2, 2, dtype=torch.long))
    with pytest.raises(ValueError):
        DepthTask("depth").loss(torch.randn(1, 1, 4, 4), torch.ones(1, 1, 2, 2))
    with pytest.raises(ValueError):
        SaliencyTask("sal").metric_sums(torch.randn(1, 2, 4, 4), torch.zeros(1, 2, 2, dtype=torch.long))
    with pytest.raises(ValueError):
        NormalTask("normal").loss(torch.randn(1, 3, 4, 4), torch.randn(1, 3, 2, 2))


# -- depth -------------------------------------------------------------------------------------

def test_depth_excludes_invalid_pixels_from_loss_and_metrics():
    task = DepthTask("depth")
    target = torch.tensor([[[[0.0, 2.0], [4.0, 1.0]]]])
    pred = torch.tensor([[[[5.0, 1.0], [5.0, 1.5]]]], requires_grad=True)
    loss = task.loss(pred, target)
    assert loss.item() == pytest.approx((1 + 1 + 0.5) / 3)  # the invalid pixel's 5 is not counted
    loss.backward()
    assert torch.allclose(pred.grad, torch.tensor([[[[0.0, -1 / 3], [1 / 3, 1 / 3]]]]))
    out = evaluate(task, [(pred.detach(), target)])
    assert out["abs_err"] == pytest.approx(2.5 / 3)
    assert out["rel_err"] == pytest.approx((1 / 2 + 1 / 4 + 0.5 / 1) / 3)


def test_depth_sums_over_batches_and_nonfinite_targets_are_invalid():
    task = DepthTask("depth")
    batch_a = (torch.tensor([[[[3.0, 9.0]]]]), torch.tensor([[[[2.0, 0.0]]]]))
    batch_b = (torch.tensor([[[[1.0, 4.0]]]]), torch.tensor([[[[1.0, 4.0]]]]))
    out = evaluate(task, [batch_a, batch_b])
    # 3 valid pixels, one error of 1 (rel 1/2): per-batch means would give 0.5 and 0.25
    assert out["abs_err"] == pytest.approx(1 / 3)
    assert out["rel_err"] == pytest.approx(0.5 / 3)
    pred = torch.tensor([[[[1.0, 1.0, 7.0]]]], requires_grad=True)
    target = torch.tensor([[[[float("nan"), 2.0, float("inf")]]]])
    loss = task.loss(pred, target)
    loss.backward()
    assert loss.item() == pytest.approx(1.0)
    assert torch.equal(pred.grad, torch.tensor([[[[0.0, -1.0, 0.0]]]]))
    assert evaluate(task, [(pred.detach(), target)]) == pytest.approx({"abs_err": 1.0, "rel_err": 0.5})


def test_depth_all_invalid_batch_gives_zero_loss_with_grad():
    pred = torch.randn(2, 1, 3, 3, requires_grad=True)
    loss = DepthTask("depth").loss(pred, torch.zeros(2, 1, 3, 3))
    assert loss.item() == 0.0 and not torch.isnan(loss)
    assert loss.grad_fn is not None
    loss.backward()
    assert torch.equal(pred.grad, torch.zeros_like(pred))


# -- surface normals ---------------------------------------------------------------------------

def _rad(deg):
    return math.radians(deg)


# (pred, target, angle in degrees or None when the target is invalid); preds are unnormalised
NORMAL_PIXELS = [
    ((0.0, 0.0, 2.0), (0.0, 0.0, 1.0), 0.0),
    ((0.0, 2.5 * math.sin(_rad(20)), 2.5 * math.cos(_rad(20))), (0.0, 0.0, 1.0), 20.0),
    ((math.sin(_rad(25)), 0.0, math.cos(_rad(25))), (0.0, 0.0, 1.0), 25.0),
    ((1.0, 1.0, 0.0), (1.0, 0.0, 0.0), 45.0),
    ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), 90.0),
    ((0.0, 0.0, -3.0), (0.0, 0.0, 1.0), 180.0),
    ((1.0, 1.0, 1.0), (0.0, 0.0, 0.0), None),
    ((0.0, 1.0, 0.0), (0.0, 0.0, 0.0), None),
]


def normal_batch(pixels, width=None):
    """(1, 3, H, W) pred and target from a list of pixels laid out row by row."""
    width = width or len(pixels)
    pred = torch.tensor([p for p, _, _ in pixels]).T.reshape(1, 3, -1, width)
    target = torch.tensor([t for _, t, _ in pixels]).T.reshape(1, 3, -1, width)
    return pred, target


def test_normal_angles_by_hand():
    pred, target = normal_batch(NORMAL_PIXELS, width=4)
    angles = [a for _, _, a in NORMAL_PIXELS if a is not None]  # 0 20 25 45 90 180
    out = evaluate(NormalTask("normal"), [(pred, target)])
    assert list(out) == ["mean", "median", "within_11.25", "within_22.5", "within_30"]
    assert out["mean"] == pytest.approx(360 / 6, abs=1e-3)
    assert out["median"] == pytest.approx((25 + 45) / 2, abs=0.01)  # even count: mean of middle two
    assert out["within_11.25"] == pytest.approx(1 / 6)
    assert out["within_22.5"] == pytest.approx(2 / 6)
    assert out["within_30"] == pytest.approx(3 / 6)
    rmse = evaluate(NormalTask("normal", spread="rmse"), [(pred, target)])
    assert list(rmse) == ["mean", "rmse", "within_11.25", "within_22.5", "within_30"]
    assert rmse["rmse"] == pytest.approx(math.sqrt((0 + 400 + 625 + 2025 + 8100 + 32400) / 6), abs=1e-3)
    assert rmse["mean"] == pytest.approx(out["mean"])
    loss = NormalTask("normal").loss(pred, target)
    assert loss.item() == pytest.approx(sum(1 - math.cos(_rad(a)) for a in angles) / 6, abs=1e-6)


def test_normal_median_is_over_the_whole_split():
    task = NormalTask("normal")
    target = (0.0, 0.0, 1.0)
    tilt = [((0.0, math.sin(_rad(a)), math.cos(_rad(a))), target, a) for a in (10, 20, 30, 40, 50)]
    a, b, c = normal_batch(tilt[:1]), normal_batch(tilt[1:4]), normal_batch(tilt[4:])
    # per-batch medians 10 and 30 would average 20; the split's sorted 10 20 30 40 gives 25
    assert evaluate(task, [a, b])["median"] == pytest.approx(25, abs=0.01)
    assert evaluate(task, [a, b, c])["median"] == pytest.approx(30, abs=0.01)  # odd count
    assert evaluate(task, [a, b, c])["within_22.5"] == pytest.approx(2 / 5)


def test_normal_loss_of_parallel_unnormalised_prediction_is_zero():
    target = torch.nn.functional.normalize(torch.randn(2, 3, 4, 4), dim=1)
    target[0, :, 0, 0] = 0  # an invalid pixel whose prediction is unrelated
    scale = torch.rand(2, 1, 4, 4) * 5 + 0.1
    pred = (target * scale).requires_grad_()
    pred.data[0, :, 0, 0] = torch.tensor([1.0, -2.0, 0.5])
    loss = NormalTask("normal").loss(pred, target)
    assert abs(loss.item()) < 1e-6
    assert NormalTask("normal").loss(-pred, target).item() == pytest.approx(2.0, abs=1e-5)
    invalid = NormalTask("normal").loss(pred, torch.zeros_like(target))
    assert invalid.item() == 0.0 and invalid.grad_fn is not None


def test_normal_rejects_an_unknown_spread():
    with pytest.raises(ValueError, match="spread"):
        NormalTask("normal", spread="mad")


# -- saliency ----------------------------------------------------------------------------------

def saliency_batch(probs, targets):
    """Logits (1, 2, 1, N) whose foreground softmax is ``probs``; target (1, 1, N)."""
    p = torch.tensor(probs, dtype=torch.float64)
    logits = torch.stack([torch.zeros_like(p), torch.log(p / (1 - p))]).float()
    return logits.reshape(1, 2, 1, -1), torch.tensor(targets).reshape(1, 1, -1)


def test_saliency_maxf_and_miou_by_hand():
    # the ignored pixel (p 0.7) would add a false positive at every threshold <= 0.7
    pred, target = saliency_batch([0.9, 0.8, 0.6, 0.3, 0.1, 0.7], [1, 0, 1, 1, 0, -1])
    out = evaluate(SaliencyTask("sal"), [(pred, target)])
    assert list(out) == ["miou", "maxf"]

    def f(tp, pp, fg=3, beta2=0.3):
        precision, recall = tp / pp, tp / fg
        return (1 + beta2) * precision * recall / (beta2 * precision + recall)

    # thresholds sweep the cuts {0.9}, {0.9, 0.8}, ..., {all}: (TP, predicted positives)
    cuts = [f(1, 1), f(1, 2), f(2, 3), f(3, 4), f(3, 5)]
    assert max(cuts) == f(3, 4)  # τ in (0.1, 0.3]: P = 3/4, R = 1
    assert out["maxf"] == pytest.approx(1.3 * 0.75 / (0.3 * 0.75 + 1))
    # argmax: preds 1 1 1 0 0 vs targets 1 0 1 1 0 → fg: TP 2, union 4; bg: TP 1, union 3
    assert out["miou"] == pytest.approx((2 / 4 + 1 / 3) / 2)
    ce = -(math.log(0.9) + math.log(0.2) + math.log(0.6) + math.log(0.3) + math.log(0.9)) / 5
    assert SaliencyTask("sal").loss(pred, target).item() == pytest.approx(ce, rel=1e-5)


def test_saliency_counts_add_up_over_batches():
    task = SaliencyTask("sal")
    a = saliency_batch([0.9, 0.8, 0.6], [1, 0, 1])
    b = saliency_batch([0.3, 0.1, 0.7], [1, 0, -1])
    both = saliency_batch([0.9, 0.8, 0.6, 0.3, 0.1, 0.7], [1, 0, 1, 1, 0, -1])
    two, one = accumulate(task, [a, b]), task.metric_sums(*both)
    assert all(torch.equal(two[k], one[k]) for k in one)
    assert int(one["hist"].sum()) == 5 and int(one["hist"][1].sum()) == 3
    # batch b alone: fg pixel at 0.3 is found at τ <= 0.3 with one FP (0.1) only at τ <= 0.1
    assert evaluate(task, [b])["maxf"] == pytest.approx(1.0)
    assert task.finalize(two)["maxf"] == pytest.approx(1.3 * 0.75 / (0.3 * 0.75 + 1))


# -- keypoints / edges -------------------------------------------------------------------------

def test_pixel_l1_with_and_without_ignore_value():
    target = torch.tensor([[[[-1.0, 0.5], [0.2, 1.0]]]])
    pred = torch.tensor([[[[3.0, 0.0], [0.2, 0.5]]]], requires_grad=True)
    task = PixelL1Task("edge", ignore_value=-1)
    loss = task.loss(pred, target)
    assert loss.item() == pytest.approx((0.5 + 0 + 0.5) / 3)
    loss.backward()
    assert pred.grad[0, 0, 0, 0].item() == 0.0
    assert evaluate(task, [(pred.detach(), target)]) == pytest.approx({"abs_err": 1 / 3})
    plain = PixelL1Task("keypoint")
    assert evaluate(plain, [(pred.detach(), target)]) == pytest.approx({"abs_err": (4 + 0.5 + 0 + 0.5) / 4})
    # two batches: 3 valid pixels with total error 1 and 1 pixel with error 3 → 4 / 4
    extra = (torch.tensor([[[[4.0, 7.0]]]]), torch.tensor([[[[1.0, -1.0]]]]))
    assert evaluate(task, [(pred.detach(), target), extra])["abs_err"] == pytest.approx(4 / 4)
    empty = task.loss(pred, torch.full_like(target, -1.0))
    assert empty.item() == 0.0 and empty.grad_fn is not None


# -- the contract, for every kind ------------------------------------------------------------

def _cases():
    g = torch.Generator().manual_seed(0)
    depth_target = torch.rand(2, 1, 4, 6, generator=g) + 0.5
    depth_target[0, 0, :2] = 0
    normal_target = torch.nn.functional.normalize(torch.randn(2, 3, 4, 6, generator=g), dim=1)
    normal_target[1, :, 0] = 0
    seg_target = torch.randint(-1, 5, (2, 4, 6), generator=g)
    sal_target = torch.randint(-1, 2, (2, 4, 6), generator=g)
    return [
        (SegmentationTask("seg", 5), torch.randn(2, 5, 4, 6, generator=g), seg_target),
        (SegmentationTask("seg", 5, pixel_metric="error"), torch.randn(2, 5, 4, 6, generator=g), seg_target),
        (DepthTask("depth"), torch.rand(2, 1, 4, 6, generator=g), depth_target),
        (NormalTask("normal"), torch.randn(2, 3, 4, 6, generator=g), normal_target),
        (NormalTask("normal", spread="rmse"), torch.randn(2, 3, 4, 6, generator=g), normal_target),
        (SaliencyTask("sal"), torch.randn(2, 2, 4, 6, generator=g), sal_target),
        (PixelL1Task("edge", ignore_value=0.0), torch.rand(2, 1, 4, 6, generator=g),
         (torch.rand(2, 1, 4, 6, generator=g) > 0.3).float()),
    ]


@pytest.mark.parametrize("case", range(len(_cases())))
def test_contract_loss_grads_sums_and_finalize(case):
    task, pred, target = _cases()[case]
    pred = pred.requires_grad_()
    loss = task.loss(pred, target)
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    assert pred.grad is not None and torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0
    sums = task.metric_sums(pred, target)
    for value in sums.values():
        assert isinstance(value, torch.Tensor)
        assert value.device == pred.device
        assert not value.requires_grad
    out = task.finalize(accumulate(task, [(pred.detach(), target)] * 2))
    assert list(out) == [m.name for m in task.metrics]
    assert list(task.spec()) == list(out)
    assert all(type(v) is float and math.isfinite(v) for v in out.values())
    assert out == pytest.approx(task.finalize(sums))  # the same batch twice: same ratios


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("case", range(len(_cases())))
def test_loss_and_metric_sums_do_not_sync_with_the_host(case):
    task, pred, target = _cases()[case]
    pred, target = pred.cuda().requires_grad_(), target.cuda()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        task.loss(pred, target).backward()
        sums = task.metric_sums(pred, target)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert all(v.is_cuda for v in sums.values())
