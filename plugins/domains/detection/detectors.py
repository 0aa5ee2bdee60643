"""torchvision's detectors, built unforked (issue 21): the six published builders, or one of three
detector classes on a narrow ResNet-FPN for small images and a CPU.

Nothing is downloaded: every builder is called with ``weights=None, weights_backbone=None``;
pretrained weights come only from a local file (``load_local_weights``). The input resolution
is set on the detector's own transform (``GeneralizedRCNNTransform``): ``min_size``/``max_size``
for Faster R-CNN, RetinaNet and FCOS, ``fixed_size`` for SSD (its default boxes are relative to
the image, so the head is unchanged).
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from mtl_platform.errors import UserError

#: the published torchvision builders (name: the function in ``torchvision.models.detection``)
BUILDERS = (
    "fasterrcnn_resnet50_fpn",
    "fasterrcnn_mobilenet_v3_large_fpn",
    "retinanet_resnet50_fpn",
    "ssd300_vgg16",
    "ssdlite320_mobilenet_v3_large",
    "fcos_resnet50_fpn",
)
#: torchvision's detector classes on a ResNet-FPN of ``backbone`` with ``fpn_channels`` channels
FAMILIES = ("fasterrcnn", "retinanet", "fcos")
DETECTORS = BUILDERS + FAMILIES
RESNETS = ("resnet18", "resnet34", "resnet50")
SSD_MIN_SIZE = 300  # VGG-16's extra layers need at least 300 x 300 inputs


def family(detector: str) -> str:
    """The detector class behind a name: fasterrcnn, retinanet, ssd or fcos."""
    if detector.startswith("ssd"):
        return "ssd"
    return detector.split("_")[0]


def _resnet_fpn(name: str, channels: int, last_level: str) -> nn.Module:
    """A ResNet (random init, BatchNorm) with torchvision's FPN on C3–C5 (C2–C5 for Faster R-CNN),
    ``channels`` wide; ``last_level``: ``pool`` (Faster R-CNN's P6 by max-pooling) or ``p6p7``
    (RetinaNet's and FCOS's P6, P7 from P5)."""
    from torchvision import models
    from torchvision.models.detection.backbone_utils import BackboneWithFPN
    from torchvision.ops.feature_pyramid_network import LastLevelMaxPool, LastLevelP6P7

    resnet = getattr(models, name)(weights=None)
    stage_channels = [_out(resnet, i) for i in range(1, 5)]
    stages = (1, 2, 3, 4) if last_level == "pool" else (2, 3, 4)
    extra = LastLevelMaxPool() if last_level == "pool" else LastLevelP6P7(channels, channels)
    return BackboneWithFPN(resnet, {f"layer{s}": str(i) for i, s in enumerate(stages)},
                           [stage_channels[s - 1] for s in stages], channels, extra_blocks=extra)


def _out(resnet: nn.Module, stage: int) -> int:
    """The output channels of a ResNet stage (``layer1`` … ``layer4``)."""
    block = getattr(resnet, f"layer{stage}")[-1]
    last = block.conv3 if hasattr(block, "conv3") else block.conv2
    return last.out_channels


def build_detector(detector: str, num_classes: int, image_size: int | None = None, backbone: str = "resnet18",
                   fpn_channels: int = 256, head_convs: int = 4) -> nn.Module:
    """A torchvision detector for ``num_classes`` classes *including* background (index 0).

    ``detector``: one of :data:`BUILDERS` (the published network, random init) or of
    :data:`FAMILIES` (the torchvision class on ``backbone``'s ResNet-FPN, ``fpn_channels`` wide;
    FCOS with ``head_convs`` convolutions in each head tower). ``image_size``: the input
    resolution (None: the detector's own)."""
    from torchvision.models import detection as tvd

    if detector not in DETECTORS:
        from mtl_platform.params import did_you_mean

        raise UserError(f"domain.detector: unknown detector {detector!r}{did_you_mean(detector, DETECTORS)}; "
                        f"allowed: {', '.join(DETECTORS)}")
    if detector == "ssd300_vgg16" and image_size is not None and image_size < SSD_MIN_SIZE:
        raise UserError(f"domain.image_size: got {image_size}; ssd300_vgg16's VGG-16 extra layers need at least "
                        f"{SSD_MIN_SIZE} (use ssdlite320_mobilenet_v3_large or fcos for small images)")
    if detector == "fcos" and fpn_channels % 32:
        raise UserError(f"domain.fpn_channels: got {fpn_channels}; FCOS's head normalises with GroupNorm(32), so "
                        f"use a multiple of 32")
    if detector in BUILDERS:
        model = getattr(tvd, detector)(weights=None, weights_backbone=None, num_classes=num_classes)
    else:
        size = image_size or 800
        kwargs = {"min_size": size, "max_size": max(size, image_size or 1333)}
        if detector == "fasterrcnn":
            model = tvd.FasterRCNN(_resnet_fpn(backbone, fpn_channels, "pool"), num_classes=num_classes, **kwargs)
        elif detector == "retinanet":
            model = tvd.RetinaNet(_resnet_fpn(backbone, fpn_channels, "p6p7"), num_classes=num_classes, **kwargs)
        else:
            from torchvision.models.detection.fcos import FCOSHead

            body = _resnet_fpn(backbone, fpn_channels, "p6p7")
            head = FCOSHead(fpn_channels, 1, num_classes, num_convs=head_convs)
            model = tvd.FCOS(body, num_classes=num_classes, head=head, **kwargs)
    if image_size is not None:
        set_image_size(model, image_size)
    return model


def set_image_size(model: nn.Module, size: int) -> None:
    """Resize inputs to ``size``: the shorter side (at most ``size`` on the longer side), or the
    fixed square of SSD."""
    transform = model.transform
    if getattr(transform, "fixed_size", None):
        transform.fixed_size = (size, size)
    transform.min_size = (size,)
    transform.max_size = size


def load_local_weights(model: nn.Module, path: str | None, where: str) -> None:
    """Load backbone (or whole-detector) weights from a local file: a state dict whose keys are the
    detector's own (``backbone.body.…``) or its backbone's (``body.…``, ``features.…``). A path
    that does not exist, or a file with no key the detector has, is one line naming ``where``."""
    if path is None:
        return
    file = Path(path).expanduser()
    if not file.is_file():
        raise UserError(f"{where}: weights file {str(file)!r} not found; download the backbone's torchvision "
                        f"weights on a machine with internet (e.g. torchvision.models.ResNet50_Weights) and "
                        f"give the local path, or set {where}: null for random initialisation")
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's input
        raise UserError(f"{where}: cannot read {str(file)!r} as a PyTorch state dict ({type(exc).__name__})") from None
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    own = model.state_dict()
    matched = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not matched:  # a bare backbone's keys
        for prefix in ("backbone.", "backbone.body."):
            trial = {_ssd_vgg_key(model, prefix + k): v for k, v in state.items()}
            trial = {k: v for k, v in trial.items() if k in own and own[k].shape == v.shape}
            if len(trial) > len(matched):
                matched = trial
    if not matched:
        raise UserError(f"{where}: {str(file)!r} has no parameter of this detector (keys like "
                        f"{next(iter(own))!r} or its backbone's own)")
    model.load_state_dict(matched, strict=False)
    print(f"{where}: loaded {len(matched)} of the {len(state)} tensors in {file} "
          f"({len(own)} in the detector)")


def _ssd_vgg_key(model: nn.Module, key: str) -> str:
    """torchvision's SSD300 splits VGG-16's ``features`` at the fourth max-pool: layers from there
    on live in ``backbone.extra.0`` (``SSDFeatureExtractorVGG``); a VGG file's ``features.K`` key
    is renamed accordingly."""
    features = getattr(getattr(model, "backbone", None), "features", None)
    parts = key.split(".")
    if (features is not None and hasattr(model.backbone, "extra") and parts[:2] == ["backbone", "features"]
            and len(parts) > 2 and parts[2].isdigit() and int(parts[2]) >= len(features)):
        return ".".join(["backbone", "extra", "0", str(int(parts[2]) - len(features)), *parts[3:]])
    return key


__all__ = ["BUILDERS", "FAMILIES", "DETECTORS", "RESNETS", "build_detector", "family", "load_local_weights",
           "set_image_size"]
