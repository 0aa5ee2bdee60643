"""The MultiMNIST domain: two overlapping real MNIST digits, tasks ``left`` and ``right``."""
from mtl_platform.hookspecs import hookimpl


@hookimpl
def mtl_register(registry):
    from .domain import MultiMNIST

    registry.add_domain(MultiMNIST)
