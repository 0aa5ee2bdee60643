"""The syntheses that leave images unchanged: ``sources`` (multi-domain generalisation, the real
source domains are the loss terms) and ``none`` (ERM on the source: one loss term, the STL
baseline of the report)."""
from __future__ import annotations

from torch import Tensor

from mtl_platform.params import resolve_params

from ..contract import Synthesis


class _Identity(Synthesis):
    def __init__(self, seed: int = 0, **params):
        super().__init__(seed, **params)
        self.config = resolve_params(self.declared_params(), params, "domain.synthesis")

    def transform(self, images: Tensor, k: int, keys: Tensor) -> Tensor:
        return images


class Sources(_Identity):
    """One loss term per real source domain (named after it); the domain draws one sub-batch of
    each source per step, and the images are left as they are."""

    name = "sources"
    per_source = True

    def names(self, sources: list[str]) -> list[str]:
        return list(sources)


class NoSynthesis(_Identity):
    """ERM: the source batch itself, one loss term named ``source``."""

    name = "plain"

    def names(self, sources: list[str]) -> list[str]:
        return ["source"]
