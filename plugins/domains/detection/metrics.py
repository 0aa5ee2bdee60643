"""Detection AP from pycocotools' COCOeval, the reference implementation of the COCO metrics
(issue 21): nothing here matches boxes or integrates precision by hand.

One evaluation over the whole split, at COCO's ten IoU thresholds 0.50:0.05:0.95, area "all",
100 detections per image (101-point interpolated precision, averaged over the classes that have
ground truth). Reported, as fractions in [0, 1]:

- ``AP``: COCO AP@[.5:.95], the mean over the ten thresholds; ``AP50``, ``AP75``;
- ``AP60``, ``AP70``, ``AP80``, ``AP90``: the same evaluation's AP at those thresholds (rows of
  its precision array, so AP50…AP90 come from one matching), and ``AP_50_90``, their mean with
  AP50: the "AP averaged over IoU 0.5 to 0.9" of spec gradients.md §1.12 (the GH paper's Table 7
  columns). Table 7's own AP column (52.4 for DSSD) is not the mean of its five columns (56.6);
  it is close to COCO AP@[.5:.95], which is why both are reported (docs/detection.md).

Ground-truth boxes flagged ``iscrowd`` are COCO crowd regions (a detection on them is neither a
true nor a false positive); the VOC reader flags "difficult" objects so, the nearest COCOeval has
to VOC's ignore rule.
"""
from __future__ import annotations

import contextlib
import io

import numpy as np

from mtl_platform.contracts.task import Metric, Task

THRESHOLDS = np.linspace(0.5, 0.95, 10)  # COCOeval's own default, spelled out
NAMED = {"AP50": 0.5, "AP60": 0.6, "AP70": 0.7, "AP75": 0.75, "AP80": 0.8, "AP90": 0.9}
PAPER = ("AP50", "AP60", "AP70", "AP80", "AP90")
METRIC_NAMES = ("AP", "AP50", "AP75", "AP_50_90", "AP60", "AP70", "AP80", "AP90")


class DetectionTask(Task):
    """The evaluated task of the detection domain: AP over the split (counts in Δp and η), the
    other APs reported beside it. Its losses are the detector's (``grouping``), not ``loss``."""

    metrics = (Metric("AP", higher_is_better=True),
               *(Metric(n, higher_is_better=True, in_delta_p=False) for n in METRIC_NAMES[1:]))


def _quiet(fn, *args):
    with contextlib.redirect_stdout(io.StringIO()):
        return fn(*args)


def coco_ap(ground_truth: list[dict], detections: list[dict], num_classes: int) -> dict[str, float]:
    """AP metrics of ``detections`` against ``ground_truth``, one dict per image in the same order.

    ``ground_truth[i]``: ``boxes`` (n, 4) x1 y1 x2 y2 in pixels, ``labels`` (n,) in 1…num_classes−1
    (0 is background), optional ``iscrowd`` (n,). ``detections[i]``: ``boxes``, ``scores``,
    ``labels``. Arrays or CPU tensors. NaN for every metric when no image has a ground-truth box."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    images, annotations = [], []
    for i, gt in enumerate(ground_truth):
        images.append({"id": i + 1})
        boxes = np.asarray(gt["boxes"], dtype=np.float64).reshape(-1, 4)
        labels = np.asarray(gt["labels"]).reshape(-1)
        crowd = np.asarray(gt.get("iscrowd", np.zeros(len(labels)))).reshape(-1)
        for b, c, k in zip(boxes, labels, crowd):
            w, h = b[2] - b[0], b[3] - b[1]
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": int(c),
                                "bbox": [float(b[0]), float(b[1]), float(w), float(h)], "area": float(w * h),
                                "iscrowd": int(k)})
    if not any(a["iscrowd"] == 0 for a in annotations):
        return {name: float("nan") for name in METRIC_NAMES}
    rows = []
    for i, det in enumerate(detections):
        boxes = np.asarray(det["boxes"], dtype=np.float64).reshape(-1, 4)
        for b, s, c in zip(boxes, np.asarray(det["scores"]).reshape(-1), np.asarray(det["labels"]).reshape(-1)):
            rows.append([i + 1, b[0], b[1], b[2] - b[0], b[3] - b[1], float(s), int(c)])
    if not rows:
        return {name: 0.0 for name in METRIC_NAMES}
    gt = COCO()
    gt.dataset = {"images": images, "annotations": annotations,
                  "categories": [{"id": c} for c in range(1, num_classes)]}
    _quiet(gt.createIndex)
    dt = _quiet(gt.loadRes, np.asarray(rows, dtype=np.float64))
    ev = COCOeval(gt, dt, iouType="bbox")
    ev.params.iouThrs = THRESHOLDS.copy()
    _quiet(ev.evaluate)
    _quiet(ev.accumulate)
    precision = ev.eval["precision"][:, :, :, 0, -1]  # (T, R, K) at area "all", maxDets 100

    def mean(p: np.ndarray) -> float:
        valid = p[p > -1]
        return float(valid.mean()) if valid.size else float("nan")

    out = {"AP": mean(precision)}
    for name, thr in NAMED.items():
        out[name] = mean(precision[int(np.argmin(np.abs(THRESHOLDS - thr)))])
    out["AP_50_90"] = float(np.mean([out[n] for n in PAPER]))
    return {name: out[name] for name in METRIC_NAMES}
