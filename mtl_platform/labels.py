"""Partial labels: a sample may lack some tasks' labels (issue 20, part 4).

**What a batch carries.** A dataset whose samples may lack labels yields
``(inputs, {task: target}, {task: labelled})``: the third element maps a task to a boolean
tensor of shape (n,), True where the sample *has* that task's label. A task absent from the
mapping is labelled on every sample; a batch of two elements is fully labelled. The target of
an unlabelled sample may hold any value of the right dtype (it is never read: the loss and
the metrics replace it before use).

**A sentinel instead of a mask.** Classification targets may mark a missing label with
``MISSING = -1`` (the convention of integer class labels); :func:`from_sentinel` turns such
targets into the mask once, when a dataset is built, never per batch.

What the platform does with the mask: each task's loss is the mean of its per-sample losses
over the labelled samples only (:func:`masked_mean`; a task with no labelled sample in the
batch has loss exactly 0 and a zero gradient); the weighting is told which tasks are present
(:func:`present`, a (m,) bool tensor on the device: no host read per batch); metrics count
only the labelled samples (``Task.labelled_sums``).
"""
from __future__ import annotations

from typing import Mapping, Sequence

import torch
from torch import Tensor

MISSING = -1  #: the sentinel a classification target may carry for "no label"


def label_masks(batch) -> dict:
    """The ``{task: labelled}`` masks ``batch`` carries: the third element of
    ``(inputs, targets, {task: labelled})``; ``{}`` for a batch of any other form (fully labelled,
    or a domain's own format, such as UDA's source and target batches)."""
    if isinstance(batch, (tuple, list)) and len(batch) == 3 and isinstance(batch[2], Mapping):
        return dict(batch[2])
    return {}


def unpack(batch) -> tuple:
    """``(inputs, targets, labelled)`` of a batch of two or three elements (``{}``: all labelled)."""
    if len(batch) == 3:
        inputs, targets, labelled = batch
        return inputs, targets, dict(labelled)
    inputs, targets = batch
    return inputs, targets, {}


def masked_mean(per_sample: Tensor, labelled: Tensor) -> Tensor:
    """The mean of ``per_sample`` (n,) over the samples where ``labelled`` (n,) is True.

    With no labelled sample the result is exactly 0 and so is its gradient (never 0/0 = NaN):
    the unlabelled entries are replaced by 0 with ``torch.where`` (whose gradient is 0 there
    whatever the loss's value) and the count is floored at 1.
    """
    kept = torch.where(labelled, per_sample, torch.zeros_like(per_sample))
    count = labelled.sum(dtype=per_sample.dtype).clamp_min(1)
    return kept.sum() / count


def fill_missing(target: Tensor, labelled: Tensor, value=0) -> Tensor:
    """``target`` with its unlabelled rows replaced by ``value`` (a class index every loss accepts,
    or a finite regression target), so that no sentinel or NaN reaches a loss function."""
    mask = labelled.reshape(labelled.shape + (1,) * (target.dim() - labelled.dim()))
    return torch.where(mask, target, torch.full_like(target, value))


def present(labelled: Mapping[str, Tensor], tasks: Sequence[str], like: Tensor | None = None) -> Tensor | None:
    """The (m,) bool tensor "task t has at least one labelled sample in this batch", in ``tasks``'
    order, on the masks' device (no host read); None when the batch carries no mask (every task
    present)."""
    if not labelled:
        return None
    device = next(iter(labelled.values())).device
    return torch.stack([labelled[t].any() if t in labelled else torch.ones((), dtype=torch.bool, device=device)
                        for t in tasks])


def from_sentinel(targets: Mapping[str, Tensor], missing: int = MISSING) -> tuple[dict, dict]:
    """Split integer targets that mark missing labels with ``missing`` into ``(targets, labelled)``:
    the sentinel becomes class 0 in the targets and False in the task's mask. Only one-dimensional
    integer targets (one class per sample) are read; others (a segmentation map's per-pixel ignore
    value is not a missing sample) and tasks without the sentinel get no mask. Run once when a
    dataset is built."""
    out, masks = {}, {}
    for task, target in targets.items():
        out[task] = target
        if target.dim() != 1 or target.dtype.is_floating_point or target.dtype == torch.bool:
            continue
        mask = target != missing
        if bool(mask.all()):
            continue
        masks[task] = mask
        out[task] = torch.where(mask, target, torch.zeros_like(target))
    return out, masks
