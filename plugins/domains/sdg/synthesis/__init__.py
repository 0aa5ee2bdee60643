"""The domain syntheses of the SDG domain (sub-kind ``sdg.synthesis``): how a source batch becomes
the K loss terms (plugins/domains/sdg/contract.py, ``Synthesis``)."""
from __future__ import annotations


def register(registry) -> None:
    """Add every synthesis to ``registry`` under ``sdg.synthesis`` (called by the sdg domain's
    ``mtl_register``)."""
    from .identity import NoSynthesis, Sources
    from .photometric import Brightness, Rotation
    from .randaugment import RandAugment

    for synthesis in (RandAugment, Rotation, Brightness, Sources, NoSynthesis):
        registry.add("sdg.synthesis", synthesis)
