"""The shared part of the augmenting syntheses: K domains, each a random transform of the same
source batch (Volpi et al., NeurIPS 2018; the DGE paper's synthesised domains, spec
gradients.md §2), named ``aug0 … aug{K-1}``."""
from __future__ import annotations

from torch import Tensor

from mtl_platform.errors import UserError
from mtl_platform.params import Param, resolve_params

from ..contract import Synthesis
from .keys import check_images, generators

K_PARAM = Param("k", int, 3, "number of synthesised domains (loss terms), at least 2", bounds="[1, inf)")


class AugmentingSynthesis(Synthesis):
    """K independent random transforms of one batch. Subclasses declare their parameters after
    ``k`` and implement ``apply(images, gens)``: the transformed batch, sample i drawn from
    ``gens[i]`` only."""

    params = (K_PARAM,)

    def __init__(self, seed: int = 0, **params):
        super().__init__(seed, **params)
        self.config = resolve_params(self.declared_params(), params, "domain.synthesis")
        self.set_params(self.config, "domain.synthesis")
        if self.k < 2:
            raise UserError(f"domain.synthesis.k: got {self.k}, expected ≥ 2 (one synthesised domain "
                            f"is ERM: use synthesis: plain)")

    def names(self, sources: list[str]) -> list[str]:
        return [f"aug{i}" for i in range(self.k)]

    def transform(self, images: Tensor, k: int, keys: Tensor) -> Tensor:
        """The k-th synthesised domain: ``k`` only names the domain; its draws are already
        folded into ``keys`` by the domain."""
        if not 0 <= k < self.k:
            raise ValueError(f"synthesised domain {k} out of range 0..{self.k - 1}")
        check_images(images, f"synthesis {self.name!r}")
        return self.apply(images, generators(keys, images.shape[0]))

    def apply(self, images: Tensor, gens: list) -> Tensor:
        raise NotImplementedError
