"""Which loss of a torchvision detector is which task, and which head reads which loss (issue 21).

A detector's training forward returns a dict of losses. The tasks the weighting sees are groups
of them (``grouping``):

- ``paper`` (default; the GH paper's §5.9 detection extension, spec gradients.md §1.12): two
  tasks, ``classification`` (what is there: Faster R-CNN's box classifier and RPN objectness;
  RetinaNet's focal loss; SSD's and FCOS's classification loss) and ``localisation`` (where it
  is: the box regressions of the ROI head and the RPN, of RetinaNet, SSD and FCOS). FCOS's
  centerness loss goes to ``localisation``: torchvision predicts centerness from the regression
  tower (the same convolutions as the box offsets) and it scores how well a location can
  localise its box, so grouping it with classification would make the regression tower a head
  both tasks read.
- ``each``: every loss its own task, under the detector's own key.

``READS`` says, per detector class, which losses each head module is differentiated by. A head
read only by the losses of one task is that task's parameters (it gets that task's gradient
alone); a head read by several tasks is a *common head*, outside the tasks and, by default,
outside the gradient space: Faster R-CNN's RPN convolution (objectness and RPN box deltas) and
its box head ``TwoMLPHead`` (the features both ROI predictors read), and under ``each`` FCOS's
regression tower (box offsets and centerness).
"""
from __future__ import annotations

from mtl_platform.errors import UserError

GROUPINGS = ("paper", "each")
CLASSIFICATION, LOCALISATION = "classification", "localisation"

#: per detector class, the losses its training forward returns, with their ``paper`` task
LOSSES = {
    "fasterrcnn": {"loss_classifier": CLASSIFICATION, "loss_objectness": CLASSIFICATION,
                   "loss_box_reg": LOCALISATION, "loss_rpn_box_reg": LOCALISATION},
    "retinanet": {"classification": CLASSIFICATION, "bbox_regression": LOCALISATION},
    "ssd": {"classification": CLASSIFICATION, "bbox_regression": LOCALISATION},
    "fcos": {"classification": CLASSIFICATION, "bbox_regression": LOCALISATION, "bbox_ctrness": LOCALISATION},
}

#: per detector class, (module prefix, the losses whose gradient reaches it) for every head module
READS = {
    "fasterrcnn": (
        ("rpn.head.conv.", ("loss_objectness", "loss_rpn_box_reg")),
        ("rpn.head.cls_logits.", ("loss_objectness",)),
        ("rpn.head.bbox_pred.", ("loss_rpn_box_reg",)),
        ("roi_heads.box_head.", ("loss_classifier", "loss_box_reg")),
        ("roi_heads.box_predictor.cls_score.", ("loss_classifier",)),
        ("roi_heads.box_predictor.bbox_pred.", ("loss_box_reg",)),
    ),
    "retinanet": (
        ("head.classification_head.", ("classification",)),
        ("head.regression_head.", ("bbox_regression",)),
    ),
    "ssd": (
        ("head.classification_head.", ("classification",)),
        ("head.regression_head.", ("bbox_regression",)),
    ),
    "fcos": (
        ("head.classification_head.", ("classification",)),
        ("head.regression_head.conv.", ("bbox_regression", "bbox_ctrness")),
        ("head.regression_head.bbox_reg.", ("bbox_regression",)),
        ("head.regression_head.bbox_ctrness.", ("bbox_ctrness",)),
    ),
}

BACKBONE = "backbone."  # the shared backbone and its neck (FPN, SSD's extra layers)


class LossGrouping:
    """The tasks of one detector class under one grouping: ``tasks`` (ordered names),
    ``group(losses)`` (the detector's loss dict summed into ``{task: loss}``), and ``owner(name)``
    (the task a parameter belongs to, ``"common"`` for a head several tasks read, ``"backbone"``)."""

    def __init__(self, detector_family: str, grouping: str):
        if grouping not in GROUPINGS:
            raise UserError(f"domain.grouping: got {grouping!r}, allowed: {', '.join(GROUPINGS)}")
        self.family, self.grouping = detector_family, grouping
        losses = LOSSES[detector_family]
        self.task_of = dict(losses) if grouping == "paper" else {k: k for k in losses}
        self.tasks = list(dict.fromkeys(self.task_of.values()))

    def group(self, losses: dict) -> dict:
        """``{task: Σ of its losses}``; a loss key this grouping does not know is refused (a
        torchvision version whose detector returns other losses must not be silently dropped)."""
        unknown = sorted(set(losses) - set(self.task_of))
        if unknown:
            raise RuntimeError(f"{self.family}: unexpected losses {unknown}; known: {sorted(self.task_of)}")
        out: dict = {}
        for key in self.task_of:  # a fixed order: the sum is the same float every step
            task = self.task_of[key]
            out[task] = out[task] + losses[key] if task in out else losses[key]
        return out

    def owner(self, name: str) -> str:
        if name.startswith(BACKBONE):
            return "backbone"
        for prefix, readers in READS[self.family]:
            if name.startswith(prefix):
                tasks = {self.task_of[r] for r in readers}
                return tasks.pop() if len(tasks) == 1 else "common"
        raise RuntimeError(f"{self.family}: parameter {name!r} is in no known head")
