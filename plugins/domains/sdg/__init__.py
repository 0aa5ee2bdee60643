"""Single-domain generalisation: K synthesised domains of each source batch are the tasks a
weighting combines (DGE, Agr-Sum, PCGrad, ...); accuracy on unseen target domains is evaluated."""
from mtl_platform.hookspecs import hookimpl


@hookimpl
def mtl_register(registry):
    from . import data, synthesis
    from .domain import SDG

    registry.add_domain(SDG)
    data.register(registry)
    synthesis.register(registry)
