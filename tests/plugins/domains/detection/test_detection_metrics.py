"""The detection AP (pycocotools' COCOeval) against a hand-computed case (issue 21)."""
from __future__ import annotations

import math

import numpy as np

from mtl_platform_plugins.domains.detection.metrics import METRIC_NAMES, coco_ap

# One image, two boxes of class 1. Detections, by score: an exact hit on the first box (IoU 1),
# a box of IoU 0.68 with the second (10 x 6.8 inside 10 x 10), and a miss.
TRUTH = [{"boxes": np.array([[0, 0, 10, 10], [20, 20, 30, 30]], float), "labels": np.array([1, 1])}]
FOUND = [{"boxes": np.array([[0, 0, 10, 10], [20, 20, 30, 26.8], [50, 50, 60, 60]], float),
          "scores": np.array([0.9, 0.8, 0.7]), "labels": np.array([1, 1, 1])}]
# At IoU thresholds <= 0.65 the ranking is hit, hit, miss: recall 1 at precision 1, AP 1.
# Above 0.68 it is hit, miss, miss: precision 1 up to recall 0.5, then no further recall; COCO's
# 101-point interpolation gives 51 of the 101 recall points (0, 0.01, ..., 0.50) precision 1.
HALF = 51 / 101


def test_ap_matches_the_hand_computed_case():
    ap = coco_ap(TRUTH, FOUND, num_classes=2)
    assert list(ap) == list(METRIC_NAMES)
    expected = {"AP50": 1.0, "AP60": 1.0, "AP70": HALF, "AP75": HALF, "AP80": HALF, "AP90": HALF,
                "AP": (4 * 1.0 + 6 * HALF) / 10, "AP_50_90": (2 * 1.0 + 3 * HALF) / 5}
    for name, value in expected.items():
        assert math.isclose(ap[name], value, rel_tol=1e-9), (name, ap[name], value)


def test_a_crowd_region_is_neither_hit_nor_miss():
    # hit (0.9), a box on the crowd region (0.85), hit (0.8): without the crowd flag the middle one
    # is a false positive (precision 2/3 at recall 1: AP50 = (51 + 50 * 2/3) / 101); with it, AP50 = 1.
    found = [{"boxes": np.array([[0, 0, 10, 10], [50, 50, 60, 60], [20, 20, 30, 30]], float),
              "scores": np.array([0.9, 0.85, 0.8]), "labels": np.array([1, 1, 1])}]
    assert math.isclose(coco_ap(TRUTH, found, 2)["AP50"], (51 + 50 * 2 / 3) / 101, rel_tol=1e-9)
    crowd = [{"boxes": np.vstack([TRUTH[0]["boxes"], [[48, 48, 62, 62]]]), "labels": np.array([1, 1, 1]),
              "iscrowd": np.array([0, 0, 1])}]
    assert coco_ap(crowd, found, 2)["AP50"] == 1.0


def test_no_detection_scores_zero_and_no_truth_is_undefined():
    empty = [{"boxes": np.zeros((0, 4)), "scores": np.zeros(0), "labels": np.zeros(0)}]
    assert coco_ap(TRUTH, empty, 2) == {n: 0.0 for n in METRIC_NAMES}
    none = [{"boxes": np.zeros((0, 4)), "labels": np.zeros(0)}]
    assert all(math.isnan(v) for v in coco_ap(none, FOUND, 2).values())


def test_ap_is_accumulated_over_the_whole_split_not_averaged_per_image():
    # Two images, each the hand-computed case's halves: pooled ranking hit(.9), hit(.8), miss(.7)
    # at IoU 0.5 as above, whatever image each detection came from.
    truth = [{"boxes": TRUTH[0]["boxes"][:1], "labels": np.array([1])},
             {"boxes": TRUTH[0]["boxes"][1:], "labels": np.array([1])}]
    found = [{"boxes": FOUND[0]["boxes"][:1], "scores": np.array([0.9]), "labels": np.array([1])},
             {"boxes": FOUND[0]["boxes"][1:], "scores": np.array([0.8, 0.7]), "labels": np.array([1, 1])}]
    assert coco_ap(truth, found, 2) == coco_ap(TRUTH, FOUND, 2)
