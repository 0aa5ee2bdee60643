"""mtl-plugin-example: a third-party mtl-platform plugin with one weighting, ``initial_loss``.

This module is the plugin: the distribution's one entry point (group ``mtl_platform``)
names it, and mtl-platform calls its ``mtl_register`` hook to add the components.
"""
from mtl_platform.hookspecs import hookimpl

from .initial_loss import InitialLoss

__all__ = ["InitialLoss", "mtl_register"]


@hookimpl
def mtl_register(registry):
    registry.add_weighting(InitialLoss)
