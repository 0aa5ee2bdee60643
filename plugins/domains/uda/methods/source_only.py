"""Source only: the classifier trained on labelled source data, no alignment (the STL role)."""
from __future__ import annotations

import torch.nn.functional as F

from .contract import UDAMethod


class SourceOnly(UDAMethod):
    """Cross-entropy on the source batch; no alignment task. It is what the report's STL
    baseline of ``classification`` trains for every other method (the same config with the
    alignment task left out), so each method is compared with source-only training."""

    name = "source_only"
    aligns = False

    def losses(self, model, xs, ys, xt, progress, tasks):
        return {"classification": F.cross_entropy(model.heads["classification"](model.encoder(xs)), ys)}
