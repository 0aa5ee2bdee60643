"""The seams of the single-domain-generalisation domain (DESIGN.md §3.6): its data families
(sub-kind ``sdg.data``) and its domain synthesis (sub-kind ``sdg.synthesis``).

A data family (``digits``, ``pacs``, ``vlcs``, ``office_home``, ``terra_incognita``,
``domainnet``, or a third party's) holds several visual domains sharing one label space; a
config picks the source domain(s) and the unseen targets:
``domain.data: {name: pacs, source: photo}`` (targets default to every other domain).
A synthesis makes the K loss terms of a training batch: K independent augmentations of the
same source batch (``randaugment``, ``rotation``, ``brightness``), or the real source domains
themselves (``sources``, multi-domain generalisation).
"""
from __future__ import annotations

from torch import Tensor
from torch.utils.data import Dataset

from mtl_platform.contracts import Configurable


class SDGData(Configurable):
    """One family of domains with a shared label space.

    ``domains``: the family's domain names; ``num_classes``; ``image_shape``: the (C, H, W) of
    every image it yields; ``mean``/``std``: per-channel normalisation the domain applies
    *after* synthesis (images come in [0, 1]). Every family takes ``source`` (one domain, or a
    list for multi-domain generalisation) and ``targets`` (default: all other domains), checked
    by ``check_domains``.

    ``load(domain, split)`` returns a dataset of ``(image float32 (C, H, W) in [0, 1], label
    int64 ())`` samples, never augmented. ``split``: ``train`` and ``val`` for a source domain
    (``val`` a ``data_seed``-seeded held-out part of it: training-domain validation, DomainBed's
    protocol), ``test`` for a target domain (all of its data). A missing file or folder is a
    ``UserError`` naming ``domain.data.root``, the path, the expected layout and where to get
    the data.
    """

    domains: tuple[str, ...] = ()
    num_classes: int = 0
    image_shape: tuple[int, int, int] = (0, 0, 0)
    mean: tuple[float, ...] = (0.5, 0.5, 0.5)
    std: tuple[float, ...] = (0.5, 0.5, 0.5)

    def __init__(self, seed: int = 0, **params):
        self.seed = int(seed)
        self.check_ranges(params, "domain.data")
        self.config = params

    def sources(self) -> list[str]:
        source = self.config["source"]
        return [source] if isinstance(source, str) else list(source)

    def targets(self) -> list[str]:
        chosen = self.config.get("targets")
        return list(chosen) if chosen else [d for d in self.domains if d not in self.sources()]

    def load(self, domain: str, split: str) -> Dataset:
        raise NotImplementedError


class Synthesis(Configurable):
    """How a training batch becomes the K loss terms.

    ``names(sources)``: the loss-term names, in order. ``per_source``: the loss terms are the
    real source domains (one sub-batch of each per step) rather than transforms of one batch.
    ``transform(images, k, keys)``: the k-th synthesised domain of a batch of images
    ((B, C, H, W) float in [0, 1]); ``keys`` (B,) int64 seeds, one per sample, that the domain
    derives from (seed, epoch, index, k), so every draw is a pure function of them and a
    resumed run sees the same augmentations.
    """

    per_source = False

    def __init__(self, seed: int = 0, **params):
        self.seed = int(seed)
        self.check_ranges(params, "domain.synthesis")
        self.config = params

    def names(self, sources: list[str]) -> list[str]:
        raise NotImplementedError

    def transform(self, images: Tensor, k: int, keys: Tensor) -> Tensor:
        raise NotImplementedError
