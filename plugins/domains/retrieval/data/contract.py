"""The data seam of the retrieval domain (sub-kind ``retrieval.data``): a family of images, the
scene each one shows, and (query image, modification text, target image) triplets per split."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor
from torch.utils.data import Dataset

from mtl_platform.contracts import Configurable


class RetrievalData(Configurable):
    """One retrieval dataset family (``scenes``, ``css``, or a third party's): ``load(split)``
    (``train``, ``val``, ``test``) returns a :class:`RetrievalSplit`. A missing file is a
    ``UserError`` naming the path and where to get the data."""

    def __init__(self, seed: int = 0, **params):
        self.seed = int(seed)
        self.check_ranges(params, "domain.data")
        self.values = self.set_params(params, "domain.data")

    def load(self, split: str) -> "RetrievalSplit":
        raise NotImplementedError


@dataclass
class RetrievalSplit(Dataset):
    """One split: ``images`` uint8 (N, 3, H, W); ``scenes`` int64 (N,), equal for images showing
    the same scene content (a retrieved image is correct when its scene equals the target's);
    the queries ``source`` and ``target`` int64 (M,), indices into ``images``, and ``texts`` (M,
    strings). The domain sets ``tokens`` (M, L) and ``lengths`` (M,) once its vocabulary exists.

    A training sample is one query; ``get_batch(idx)`` gives ``(query images float (B, 3, H, W)
    in [0, 1], tokens (B, L), lengths (B,), target images float (B, 3, H, W))``."""

    images: Tensor
    scenes: Tensor
    source: Tensor
    target: Tensor
    texts: list[str]
    tokens: Tensor | None = field(default=None, repr=False)
    lengths: Tensor | None = field(default=None, repr=False)

    def __post_init__(self):
        n, m = len(self.images), len(self.source)
        if len(self.scenes) != n or len(self.target) != m or len(self.texts) != m:
            raise ValueError(f"inconsistent split: {n} images, {len(self.scenes)} scene ids, {m} sources, "
                             f"{len(self.target)} targets, {len(self.texts)} texts")

    def __len__(self) -> int:
        return len(self.source)

    def float_images(self, index: Tensor) -> Tensor:
        return self.images[index].float().div_(255)

    def get_batch(self, idx: Tensor):
        idx = torch.as_tensor(idx, dtype=torch.long)
        tokens = self.tokens[idx]
        lengths = self.lengths[idx]
        tokens = tokens[:, :int(lengths.max())] if len(idx) else tokens
        return self.float_images(self.source[idx]), tokens, lengths, self.float_images(self.target[idx])

    def __getitem__(self, i: int):
        return self.get_batch(torch.tensor([int(i)]))
