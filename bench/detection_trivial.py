"""Trivial predictors on the digit scenes' test split: is the detection AP degenerate?

    python bench/detection_trivial.py [--config configs/detection/digits.yaml]

Three predictors that look at no pixel, scored with the domain's own metric (COCOeval over the
whole split):
- ``mean box``: per class, the mean training box of that class, score 1 (10 detections per image);
- ``grid``: boxes of the mean training size on a grid of stride ``size/8`` over the image, one per
  class and position, score 1 (the best a location-blind prior can do for recall);
- ``grid, class prior``: the grid, each box scored with its class's training frequency.
Prints a markdown table.
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

from mtl_platform import registry as registry_mod
from mtl_platform.config import apply_overrides, read_yaml, resolve
from mtl_platform.experiment import build_domain
from mtl_platform_plugins.domains.detection.metrics import coco_ap


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="configs/detection/digits.yaml")
    args = ap.parse_args()
    registry, _ = registry_mod.load()
    raw, _ = apply_overrides(read_yaml(args.config), ["train.device=cpu", "baselines.stl=false"])
    domain = build_domain(resolve(raw, registry), registry)
    classes = len(domain.classes())
    train, test = domain.dataset("train"), domain.dataset("test")
    _, targets = train.get_batch(torch.arange(len(train)))
    boxes = torch.cat([t["boxes"] for t in targets]).numpy()
    labels = torch.cat([t["labels"] for t in targets]).numpy()
    images, truth = test.get_batch(torch.arange(len(test)))
    size = images[0].shape[-1]
    truths = [{k: t[k].numpy() for k in ("boxes", "labels", "iscrowd")} for t in truth]
    mean_box = {c: boxes[labels == c].mean(0) for c in range(1, classes + 1)}
    prior = {c: float((labels == c).mean()) for c in range(1, classes + 1)}
    w, h = (boxes[:, 2] - boxes[:, 0]).mean(), (boxes[:, 3] - boxes[:, 1]).mean()
    stride = size / 8
    grid = np.array([[x, y, x + w, y + h] for y in np.arange(0, size - h + 1, stride)
                     for x in np.arange(0, size - w + 1, stride)])
    predictors = {
        "mean box per class": {"boxes": np.stack(list(mean_box.values())), "scores": np.ones(classes),
                               "labels": np.arange(1, classes + 1)},
        "grid of mean-size boxes": {"boxes": np.tile(grid, (classes, 1)), "scores": np.ones(classes * len(grid)),
                                    "labels": np.repeat(np.arange(1, classes + 1), len(grid))},
        "grid, class-frequency scores": {"boxes": np.tile(grid, (classes, 1)),
                                         "scores": np.repeat([prior[c] for c in range(1, classes + 1)], len(grid)),
                                         "labels": np.repeat(np.arange(1, classes + 1), len(grid))},
    }
    print(f"test scenes: {len(test)}, classes: {classes}, grid boxes per class: {len(grid)}\n")
    print("| predictor | AP | AP50 | AP75 | AP_50_90 |")
    print("|---|---|---|---|---|")
    for name, found in predictors.items():
        ap_ = coco_ap(truths, [found] * len(truths), classes + 1)
        print(f"| {name} | {ap_['AP']:.4f} | {ap_['AP50']:.4f} | {ap_['AP75']:.4f} | {ap_['AP_50_90']:.4f} |")


if __name__ == "__main__":
    main()
