"""Partial labels in the task and domain layer (issue 20, part 4): losses over the labelled
samples, a zero loss and gradient for a task with none, the weighting told which tasks are
present, metrics over the labelled samples (``mtl_platform.labels``)."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from mtl_platform.batches import TensorTaskDataset
from mtl_platform.contracts import Domain, Needs, Task, Weighting
from mtl_platform.errors import UserError
from mtl_platform.gradients import GradientEngine
from mtl_platform.labels import MISSING, from_sentinel, present
from mtl_platform.tasks import ClassificationTask, RegressionTask

DTYPES = (torch.float32, torch.float64)


@pytest.mark.parametrize("dtype", DTYPES)
def test_masked_classification_loss_is_the_mean_over_labelled_samples(dtype):
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 0.0], [-1.0, 3.0, 0.0], [0.0, 0.0, 4.0]], dtype=dtype)
    target = torch.tensor([0, MISSING, 1, 0])  # the sentinel on an unlabelled sample is never read
    labelled = torch.tensor([True, False, True, True])
    loss = ClassificationTask("t", 3).labelled_loss(logits, target, labelled)
    by_hand = [-(logits[i, c] - logits[i].exp().sum().log()) for i, c in ((0, 0), (2, 1), (3, 0))]
    assert loss.dtype == dtype
    assert loss.item() == pytest.approx(float(sum(by_hand) / 3), rel=1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
def test_masked_regression_loss_is_the_mean_over_labelled_samples(dtype):
    pred = torch.tensor([[1.0], [2.0], [3.0]], dtype=dtype)
    target = torch.tensor([0.0, float("nan"), 5.0], dtype=dtype)  # NaN on the unlabelled sample
    loss = RegressionTask("r").labelled_loss(pred, target, torch.tensor([True, False, True]))
    assert loss.item() == pytest.approx((1.0 + 4.0) / 2)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("task, target", [(ClassificationTask("c", 3), torch.tensor([MISSING, MISSING])),
                                          (RegressionTask("r"), torch.tensor([float("nan"), float("inf")]))])
def test_a_task_with_no_labelled_sample_has_zero_loss_and_zero_gradient(dtype, task, target):
    pred = torch.randn(2, 3 if isinstance(task, ClassificationTask) else 1, dtype=dtype, requires_grad=True)
    target = target.to(dtype) if target.dtype.is_floating_point else target
    loss = task.labelled_loss(pred, target, torch.zeros(2, dtype=torch.bool))
    loss.backward()
    assert loss.item() == 0.0
    assert torch.equal(pred.grad, torch.zeros_like(pred))


def test_full_masks_give_the_plain_loss():
    logits, target = torch.randn(5, 4), torch.tensor([0, 1, 2, 3, 0])
    task = ClassificationTask("t", 4)
    assert task.labelled_loss(logits, target, None).item() == task.loss(logits, target).item()
    assert task.labelled_loss(logits, target, torch.ones(5, dtype=torch.bool)).item() == pytest.approx(
        task.loss(logits, target).item(), rel=1e-6)


def test_a_task_without_per_sample_losses_refuses_masks_in_one_line():
    class Whole(Task):  # a loss of the whole batch only
        def loss(self, pred, target):
            return pred.sum()

    with pytest.raises(UserError, match="'w'.*cannot take missing labels"):
        Whole("w").labelled_loss(torch.randn(2, 2), torch.tensor([0, 1]), torch.tensor([True, False]))


def test_the_sentinel_becomes_a_mask_once():
    targets, masks = from_sentinel({"a": torch.tensor([3, MISSING, 1]), "b": torch.tensor([0, 1, 2]),
                                    "r": torch.tensor([0.5, -1.0, 2.0])})
    assert torch.equal(masks["a"], torch.tensor([True, False, True]))
    assert torch.equal(targets["a"], torch.tensor([3, 0, 1]))
    assert set(masks) == {"a"}  # no sentinel in b; a float target's -1 is a value, not a sentinel


def test_present_marks_the_tasks_with_a_labelled_sample():
    labelled = {"a": torch.tensor([False, False]), "c": torch.tensor([False, True])}
    assert present({}, ["a", "b"]) is None
    assert torch.equal(present(labelled, ["a", "b", "c"]), torch.tensor([False, True, True]))


# -- a tiny domain: the default losses, train_step and evaluate ---------------------------------
class Linear(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Linear(2, 4)
        self.heads = nn.ModuleDict({t: nn.Linear(4, 2) for t in ("a", "b")})

    def forward(self, x):
        z = self.body(x)
        return {t: h(z) for t, h in self.heads.items()}

    def shared_parameters(self):
        return list(self.body.parameters())


class Tiny(Domain):
    name = "tiny_partial"

    def __init__(self, data):
        super().__init__(0, batch_size=4, eval_batch_size=3, tasks=None, drop_last=False, num_workers=0)
        self.data = data

    def build_tasks(self):
        return [ClassificationTask("a", 2), ClassificationTask("b", 2)]

    def load_split(self, split):
        return self.data


def test_evaluate_counts_only_labelled_samples():
    x = torch.randn(5, 2)
    model = Linear()
    with torch.no_grad():
        guess = {t: p.argmax(1) for t, p in model(x).items()}
    # task a: labelled on samples 0, 2, 3; its labels agree with the model on 0 and 2 only
    target_a = torch.stack([guess["a"][0], 1 - guess["a"][1], guess["a"][2], 1 - guess["a"][3], guess["a"][4]])
    labelled = {"a": torch.tensor([True, False, True, True, False])}
    domain = Tiny(TensorTaskDataset(x, {"a": target_a, "b": guess["b"]}, labelled=labelled))
    scores = domain.evaluate(model, "test")
    assert scores["a"]["accuracy"] == pytest.approx(2 / 3)  # over all five samples it would be 3/5
    assert scores["b"]["accuracy"] == 1.0


def test_a_task_with_no_labelled_test_sample_reports_nan_with_a_warning():
    x = torch.randn(4, 2)
    data = TensorTaskDataset(x, {"a": torch.zeros(4, dtype=torch.long), "b": torch.ones(4, dtype=torch.long)},
                             labelled={"a": torch.zeros(4, dtype=torch.bool)})
    with pytest.warns(UserWarning, match="task 'a' has no labelled sample in split 'test'"):
        scores = Tiny(data).evaluate(Linear(), "test")
    assert all(math.isnan(v) for v in scores["a"].values())
    assert not math.isnan(scores["b"]["accuracy"])


class Recorder(Weighting):
    """Equal weights; records the ``present`` it is given (it handles absent tasks itself)."""

    name = "recorder"
    absent_tasks = "own"

    def setup(self):
        self.seen = []

    def weights(self, losses, present=None, **computed):
        self.seen.append(present)
        return self.equal(losses)


def test_the_weighting_is_told_which_tasks_are_present():
    x = torch.randn(4, 2)
    data = TensorTaskDataset(x, {"a": torch.zeros(4, dtype=torch.long), "b": torch.ones(4, dtype=torch.long)},
                             labelled={"a": torch.zeros(4, dtype=torch.bool)})
    domain, model = Tiny(data), Linear()
    weighting = Recorder(["a", "b"])
    engine = GradientEngine(model, weighting, ["a", "b"])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    before = model.heads["a"].weight.detach().clone()
    for batch in domain.loaders("train"):
        out = domain.train_step(batch, model, engine, [optimizer])
    assert len(weighting.seen) == 1 and torch.equal(weighting.seen[0], torch.tensor([False, True]))
    assert out.losses["a"].item() == 0.0
    assert torch.equal(model.heads["a"].weight, before)  # the absent task's head got no gradient


class Zero(Weighting):
    """The default treatment: ``weights`` is called as always, without ``present``."""

    name = "zero_probe"
    needs = Needs.GRAMIAN

    def weights(self, losses, gram=None, **computed):
        assert "present" not in computed
        self.gram = gram
        return torch.tensor([2.0, 3.0], dtype=gram.dtype)


def test_a_default_weighting_sees_the_zero_row_and_the_absent_weight_is_zero():
    model = Linear()
    x = torch.randn(3, 2)
    out = model(x)
    losses = {"a": 0.0 * out["a"].sum(), "b": out["b"].pow(2).mean()}
    weighting = Zero(["a", "b"])
    answer = GradientEngine(model, weighting, ["a", "b"]).backward(losses, present=torch.tensor([False, True]))
    assert weighting.gram[0].abs().max() == 0.0
    assert answer.tolist() == [0.0, 3.0]


def test_only_a_batch_of_inputs_targets_and_a_mapping_carries_masks():
    """A domain's own batch format (UDA: source inputs, labels, target inputs) reaching the default
    protocol carries no masks (the merged partial labels read it as one and broke UDA)."""
    import torch

    from mtl_platform.labels import label_masks

    x, y = torch.zeros(2, 3), torch.zeros(2)
    mask = torch.tensor([True, False])
    assert label_masks((x, {"a": y}, {"a": mask}))["a"] is mask
    assert label_masks((x, {"a": y})) == {}
    assert label_masks((x, y, torch.zeros(2, 3))) == {}  # a third tensor is not a mask mapping
