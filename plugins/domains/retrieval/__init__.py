"""Composed image retrieval under attack as multi-task learning: TIRG's loss on clean and on
perturbed query images are the tasks a weighting harmonises (GH, GH++, PCGrad, ...; issue 22)."""
from mtl_platform.hookspecs import hookimpl


@hookimpl
def mtl_register(registry):
    from . import data
    from .domain import Retrieval
    from .perturbations import PERTURBATIONS

    registry.add_domain(Retrieval)
    data.register(registry)
    for cls in PERTURBATIONS.values():
        registry.add("retrieval.perturbation", cls)
