"""One torchvision detector as the module a run trains (issue 21; DESIGN.md §3.1, §3.3).

The gradient space — the parameters whose per-task gradients a weighting combines — is the
shared backbone and its neck (the ResNet/MobileNet/VGG body and the FPN or SSD extra layers):
spec gradients.md §1.12 leaves open whether the GH paper harmonised detection over the whole
network or over the shared backbone plus neck, and §1.13.1 makes the shared parameters the
platform's default; the backbone and neck are exactly what the classification and localisation
losses both pull on, while each task's own head is read by its loss alone. ``gradient_space:
shared`` adds the common heads (read by both tasks: Faster R-CNN's RPN convolution and box head),
``all`` takes every trainable parameter (the paper's other reading).
"""
from __future__ import annotations

from collections import OrderedDict

from torch import nn

from .grouping import LossGrouping

SPACES = ("backbone", "shared", "all")


class DetectorModel(nn.Module):
    """``detector`` (a torchvision detector) with its parameters split by ``grouping``.

    ``forward(images, targets)`` in training mode returns ``{task: loss}`` (the detector's loss
    dict grouped; the tasks sum to the detector's own total); in eval mode the detector's
    detections. Parameter sets: ``shared_parameters()`` (the gradient space of ``space``:
    ``backbone`` or ``shared``; with ``all`` the domain passes every parameter to the engine),
    ``task_parameters(t)`` (heads only task t's losses read), ``common_parameters()`` (heads
    several tasks read, outside the space unless ``shared``/``all``). Every trainable parameter
    is in exactly one of backbone, common and the tasks' sets."""

    has_rep = False
    rep = None

    def __init__(self, detector: nn.Module, grouping: LossGrouping, space: str = "backbone"):
        super().__init__()
        self.detector = detector
        self.grouping = grouping
        self.space = space
        self.tasks = list(grouping.tasks)
        owned: dict[str, list] = OrderedDict((k, []) for k in ["backbone", "common", *self.tasks])
        self._blocks: dict[str, list] = OrderedDict()
        for name, p in detector.named_parameters():
            if not p.requires_grad:
                continue
            owner = grouping.owner(name)
            owned[owner].append(p)
            if owner == "backbone" or (owner == "common" and space != "backbone"):
                block = ".".join(name.split(".")[:2])
                self._blocks.setdefault(block, []).append(p)
        self._owned = owned

    def forward(self, images, targets=None):
        if self.training:
            return self.grouping.group(self.detector(images, targets))
        return self.detector(images)

    def raw_losses(self, images, targets) -> dict:
        """The detector's own loss dict (training mode)."""
        return self.detector(images, targets)

    def shared_parameters(self) -> list[nn.Parameter]:
        if self.space == "backbone":
            return list(self._owned["backbone"])
        return self._owned["backbone"] + self._owned["common"]

    def common_parameters(self) -> list[nn.Parameter]:
        return list(self._owned["common"])

    def task_parameters(self, task: str) -> list[nn.Parameter]:
        return list(self._owned[task])

    def architecture_parameters(self) -> list[nn.Parameter]:
        return []

    def parameter_blocks(self) -> list[list[nn.Parameter]]:
        """The shared parameters per module (``backbone.body``, ``backbone.fpn``, …), in order."""
        return [list(b) for b in self._blocks.values()]

    def parameter_counts(self) -> dict:
        def count(params) -> int:
            return sum(p.numel() for p in params)

        return {"total": count(self.parameters()), "shared": count(self.shared_parameters()),
                "common_heads": count(self._owned["common"]),
                "tasks": {t: count(self._owned[t]) for t in self.tasks}, "architecture": 0,
                "frozen": count(p for p in self.parameters() if not p.requires_grad)}
