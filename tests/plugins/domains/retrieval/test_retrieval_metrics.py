"""Recall@K against a hand-built gallery with known ranks (issue 22)."""
from __future__ import annotations

import torch

from mtl_platform_plugins.domains.retrieval.metrics import RecallTask, recall_hits


def _unit(angles_deg):
    a = torch.deg2rad(torch.tensor(angles_deg, dtype=torch.float32))
    return torch.stack([torch.cos(a), torch.sin(a)], 1)


def test_recall_counts_a_hit_at_the_rank_of_the_first_correct_image():
    # gallery of 12 images on the unit circle at 0°, 10°, ..., 110°: a query at 0° ranks image k at rank k
    gallery = _unit([10.0 * k for k in range(12)])
    scenes = torch.tensor([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 1])
    queries = _unit([0.0, 0.0, 0.0, 0.0, 0.0])
    exclude = torch.tensor([5, 0, 5, 0, 0])        # the query's own image, left out of its gallery
    target = torch.tensor([0, 1, 6, 9, 11])         # the target's scene
    hits = recall_hits(queries, gallery, scenes, exclude, target)
    # query 0: scene 0 is image 0 (rank 1) -> hit at 1, 5, 10
    # query 1: image 0 excluded; scene 1 is image 1 -> now rank 1 -> hit at 1, 5, 10
    # query 2: scene 6 is image 6; image 5 excluded -> rank 6 -> hit at 10 only
    # query 3: scene 9 is image 9; image 0 excluded -> rank 9 -> hit at 10 only
    # query 4: scene 11 does not occur -> never
    assert hits.tolist() == [2, 2, 4]


def test_every_image_of_the_target_scene_counts_and_the_query_image_never_does():
    gallery = _unit([0.0, 5.0, 90.0, 180.0])
    scenes = torch.tensor([7, 3, 7, 9])
    queries = _unit([0.0, 0.0])
    # query 0 is image 0 itself (scene 7): excluded, so its best image of scene 7 is image 2 at rank 2
    # query 1's target scene is 3: image 1, rank 2 after image 0
    hits = recall_hits(queries, gallery, scenes, torch.tensor([0, 3]), torch.tensor([7, 3]), ks=(1, 2, 3))
    assert hits.tolist() == [0, 2, 2]


def test_the_task_turns_sums_into_fractions():
    task = RecallTask("clean")
    out = task.finalize(task.metric_sums(torch.tensor([1, 3, 4]), torch.tensor(4)))
    assert out == {"R@1": 0.25, "R@5": 0.75, "R@10": 1.0}
    assert list(task.spec()) == ["R@1", "R@5", "R@10"]
