"""The seam between the UDA domain and its data families (sub-kind ``uda.data``).

A data family (``digits``, ``office31``, ``office_home``, ``visda``, ``domainnet``, or a third
party's) holds several visual domains that share one label space. A config picks the family
and the two domains: ``domain.data: {name: digits, source: mnist, target: uci}``; the ``uda``
domain asks the family for the source's labelled training data, the target's unlabelled
training data and the target's test data.
"""
from __future__ import annotations

from torch.utils.data import Dataset

from mtl_platform.contracts import Configurable
from mtl_platform.errors import UserError


class UDAData(Configurable):
    """One family of domains with a shared label space.

    ``domains`` names the visual domains it holds; ``num_classes`` the shared classes;
    ``image_shape`` the (C, H, W) of every image it yields (after its resizing). Every family
    takes the params ``source`` and ``target`` (two of ``domains``) plus its own.

    ``load(domain, split)`` returns a dataset of ``(image float32 (C, H, W), label int64 ())``
    samples; ``split`` is ``train`` or ``test``. Where a benchmark evaluates on the target's
    training images (the Office/VisDA protocol of tllib and the GH paper), ``test`` is that
    set and says so in the docstring. Training datasets may augment; their random draws must
    be pure functions of (seed, epoch, index) — the domain calls ``set_epoch`` when it exists.
    A missing file or folder is a ``UserError`` naming ``domain.data.root``, the path and the
    expected layout, with where to get the data.
    """

    domains: tuple[str, ...] = ()
    num_classes: int = 0
    image_shape: tuple[int, int, int] = (0, 0, 0)

    def __init__(self, seed: int = 0, **params):
        self.seed = int(seed)
        self.check_ranges(params, "domain.data")
        self.config = params

    def load(self, domain: str, split: str) -> Dataset:
        raise NotImplementedError


def check_pair(domains: tuple[str, ...], source: str, target: str) -> None:
    """``source`` and ``target`` are two different domains of the family, or a one-line error."""
    for key, value in (("source", source), ("target", target)):
        if value not in domains:
            raise UserError(f"domain.data.{key}: unknown domain {value!r}; allowed: {', '.join(domains)}")
    if source == target:
        raise UserError(f"domain.data.target: equals domain.data.source ({source!r}); "
                        "adaptation needs two different domains")
