"""Object detection as multi-task learning (issue 21; spec gradients.md §1.12; docs/detection.md).

A torchvision detector (Faster R-CNN, RetinaNet, SSD, SSDlite, FCOS), unforked, is the model;
its loss dict grouped (``grouping``) is the tasks a weighting combines, by default the GH
paper's two, ``classification`` and ``localisation``. The update protocol is the platform's
default: the grouped losses go through ``engine.backward`` over the gradient space (the shared
backbone and neck: ``model.DetectorModel``), each task's own heads getting their task's gradient.
One task is evaluated, ``detection``: COCO AP and the paper's AP50…AP90 over the whole split
(``metrics``, pycocotools).
"""
from __future__ import annotations

import torch
from torch import nn

from mtl_platform.contracts import Domain
from mtl_platform.contracts.closure import LossClosure
from mtl_platform.contracts.step import StepOutput, detached, task_weights
from mtl_platform.contracts.task import Task
from mtl_platform.errors import UserError
from mtl_platform.params import Param

from .data.contract import DetectionData
from .detectors import DETECTORS, RESNETS, build_detector, family, load_local_weights
from .grouping import GROUPINGS, LossGrouping
from .metrics import DetectionTask, coco_ap
from .model import SPACES, DetectorModel

EVAL_TASK = "detection"


class LossTerm(Task):
    """A group of the detector's losses, as the weighting sees it (the detector computes it)."""


class Detection(Domain):
    """Detection on ``data`` (``digits``: procedural digit scenes, runnable offline; ``voc``;
    ``coco``) with a torchvision ``detector``.

    Loss terms: ``grouping: paper`` → ``classification``, ``localisation``; ``each`` → the
    detector's own loss keys (``grouping``). Gradient space (``gradient_space``): ``backbone``
    (backbone + neck, default), ``shared`` (+ the heads both tasks read), ``all``. Evaluated:
    ``detection`` (AP, in Δp; AP50, AP75, AP_50_90, AP60…AP90 reported). The STL baseline is the
    detector trained on its summed losses (the STL weighting over the same loss terms), which
    is torchvision's own training step with EW. The config's architecture must be ``hps``: the
    detector's shared backbone with task heads is hard parameter sharing, built by torchvision.
    """

    name = "detection"
    params = (
        Param("data", dict, "digits", "the images and boxes: digits (synthetic scenes, offline), voc, coco",
              kind="detection.data"),
        Param("detector", str, "fcos", "a torchvision builder (" + ", ".join(DETECTORS[:6]) + ") or fcos, "
              "retinanet, fasterrcnn on a ResNet-FPN of `backbone`", choices=DETECTORS),
        Param("backbone", str, "resnet18", "the ResNet under fcos, retinanet and fasterrcnn", choices=RESNETS),
        Param("fpn_channels", int, 256, "FPN (and head) width of fcos, retinanet and fasterrcnn", bounds="[8, 1024]"),
        Param("head_convs", int, 4, "convolutions in each FCOS head tower (fcos)", bounds="[0, 8]"),
        Param("image_size", int, None, "input resolution (null: the detector's own)", optional=True,
              bounds="[32, 2048]"),
        Param("grouping", str, "paper", "the tasks: paper (classification, localisation) or each (every loss)",
              choices=GROUPINGS),
        Param("gradient_space", str, "backbone", "parameters the weighting combines: backbone (+ neck), shared "
              "(+ heads both tasks read) or all", choices=SPACES),
        Param("pretrained", str, None, "local weights file for the backbone or the whole detector (null: random "
              "init; nothing is downloaded)", optional=True),
        Param("score_thresh", float, None, "detections kept for evaluation above this score (null: the detector's "
              "own)", optional=True, bounds="[0, 1]"),
        Param("batch_size", int, 8, "training images per batch", bounds="[1, inf)"),
        Param("eval_batch_size", int, 16, "images per evaluation batch", bounds="[1, inf)"),
    )

    def __init__(self, seed: int = 0, **params):
        data = params.get("data")
        if not isinstance(data, DetectionData):
            raise TypeError("Detection(data=...) takes a built detection.data component (experiment.build_domain "
                            "builds it)")
        self.data = data
        self.values = {p.name: params.get(p.name, p.default) for p in self.params if p.name != "data"}
        detector = self.values["detector"]
        if detector not in DETECTORS:
            from mtl_platform.params import did_you_mean

            raise UserError(f"domain.detector: unknown detector {detector!r}{did_you_mean(detector, DETECTORS)}; "
                            f"allowed: {', '.join(DETECTORS)}")
        self.grouping = LossGrouping(family(detector), self.values["grouping"])
        self.eval_task = DetectionTask(EVAL_TASK)
        super().__init__(seed, **params)
        if len(self.tasks) != len(self.grouping.tasks):
            raise UserError(f"domain.tasks: the detection domain trains all of its loss terms "
                            f"({', '.join(self.grouping.tasks)}); leave domain.tasks null")

    @staticmethod
    def stl_domain_config(section: dict) -> dict:
        """The single-task reference is the detector on its summed losses: every loss term, one run."""
        return dict(section, tasks=None)

    # -- tasks -------------------------------------------------------------------------------
    def build_tasks(self):
        return [LossTerm(t) for t in self.grouping.tasks]

    @property
    def eval_tasks(self):
        return [EVAL_TASK]

    def task(self, name):
        return self.eval_task if name == EVAL_TASK else super().task(name)

    def classes(self) -> list[str]:
        return self.data.classes()

    # -- data --------------------------------------------------------------------------------
    def load_split(self, split):
        return self.data.load(split)

    # -- the model ---------------------------------------------------------------------------
    def build_model(self) -> DetectorModel:
        v = self.values
        detector = build_detector(v["detector"], len(self.classes()) + 1, v["image_size"], v["backbone"],
                                  v["fpn_channels"], v["head_convs"])
        load_local_weights(detector, v["pretrained"], "domain.pretrained")
        if v["score_thresh"] is not None:  # Faster R-CNN keeps it on its ROI heads, the others on themselves
            owner = getattr(detector, "roi_heads", detector)
            owner.score_thresh = v["score_thresh"]
        return DetectorModel(detector, self.grouping, v["gradient_space"])

    def compose(self, architecture, weighting):
        name = getattr(architecture, "architecture_name", "hps")
        if name != "hps":
            raise UserError(f"architecture {name!r}: the detection domain trains a torchvision detector, whose shared "
                            f"backbone with task heads is hard parameter sharing; use architecture: hps")
        return self.build_model()

    def encoder_factory(self):
        raise UserError("domain detection: the detector is built by torchvision (compose), not from an encoder")

    def head_factory(self, task):
        raise UserError("domain detection: the detector is built by torchvision (compose), not from heads")

    def check_weighting(self, weighting):
        reason = weighting.noop_reason(len(self.task_names)) if hasattr(weighting, "noop_reason") else None
        if reason:
            raise UserError(f"weighting {weighting.name!r} with {len(self.task_names)} loss terms is a no-op: {reason}; "
                            f"use domain.grouping: each")

    # -- the update protocol -----------------------------------------------------------------
    def losses(self, batch, model):
        images, targets = batch
        return model(images, targets)

    def present(self, batch):
        return None

    def gradient_params(self, model) -> list | None:
        if self.values["gradient_space"] == "all":
            return [p for p in model.parameters() if p.requires_grad]
        return None  # the engine's default: model.shared_parameters()

    def closure(self, batch, model):
        device = next(model.parameters()).device
        return LossClosure(lambda: self.losses(batch, model), device, params=self.gradient_params(model))

    def check_closure(self, method):
        """The protocol is the default one (with its gradient space): every closure method applies."""

    def train_step(self, batch, model, engine, optimizers) -> StepOutput:
        losses = self.losses(batch, model)
        answer = engine.backward(losses, params=self.gradient_params(model))
        engine.step(optimizers, closure=lambda: self.losses(batch, model))
        return StepOutput(detached(losses), task_weights(answer, len(engine.tasks)))

    # -- evaluation --------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, model: nn.Module, split: str):
        """AP over the whole split (``metrics.coco_ap``): detections move to the host once per
        evaluation batch (evaluation only)."""
        was_training = model.training
        model.eval()
        device = next(model.parameters()).device
        truths, found = [], []
        try:
            for images, targets in self.loaders(split):
                outputs = model([im.to(device, non_blocking=True) for im in images])
                for out, tgt in zip(outputs, targets):
                    found.append({k: out[k].cpu().numpy() for k in ("boxes", "scores", "labels")})
                    truths.append({k: tgt[k].numpy() for k in ("boxes", "labels", "iscrowd") if k in tgt})
        finally:
            model.train(was_training)
        return {EVAL_TASK: coco_ap(truths, found, len(self.classes()) + 1)}
