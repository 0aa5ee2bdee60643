"""The constant predictor of a dense domain: the floor any trained model must clear.

Per task, from the training split: segmentation and saliency predict the most frequent
class at every pixel; depth, keypoints and edges the median of the valid training values
(the constant minimising the L1 loss); surface normals the normalised mean training normal.
"""
from __future__ import annotations

import torch
from torch import nn


class ConstantPredictor(nn.Module):
    """A model with the domain's ``forward`` signature whose every output is a fixed map."""

    def __init__(self, domain):
        super().__init__()
        from .domain import head_outputs
        from .tasks import NormalTask, SaliencyTask, SegmentationTask

        self.size = domain.image_size
        self.values: dict[str, torch.Tensor] = {}
        gathered: dict[str, list] = {t: [] for t in domain.task_names}
        for _, targets in domain.loaders("train"):
            for t in domain.task_names:
                gathered[t].append(targets[t])
        for t in domain.task_names:
            task, y = domain.task(t), torch.cat(gathered[t])
            channels, _ = head_outputs(task)
            if isinstance(task, (SegmentationTask, SaliencyTask)):
                valid = y[y != task.ignore_index]
                value = torch.full((channels,), -10.0)
                value[torch.bincount(valid, minlength=channels).argmax()] = 10.0
            elif isinstance(task, NormalTask):
                n = y.permute(0, 2, 3, 1).reshape(-1, 3)
                value = torch.nn.functional.normalize(n[n.norm(dim=1) > 0].mean(0), dim=0)
            else:
                flat = y.reshape(-1)
                value = flat[(flat != 0) & torch.isfinite(flat)].median().reshape(1)
            self.values[t] = value
        self.anchor = nn.Parameter(torch.zeros(()))  # so device lookups find a parameter

    def forward(self, inputs):
        b = inputs.shape[0]
        return {t: v.to(inputs.device).view(1, -1, 1, 1).expand(b, -1, *self.size).clone()
                for t, v in self.values.items()}
