"""Object detection as multi-task learning: a torchvision detector's classification and
localisation losses are the tasks a weighting harmonises (GH, GH++, PCGrad, ...; issue 21)."""
from mtl_platform.hookspecs import hookimpl


@hookimpl
def mtl_register(registry):
    from . import data
    from .domain import Detection

    registry.add_domain(Detection)
    data.register(registry)
