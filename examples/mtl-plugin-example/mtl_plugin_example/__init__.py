"""mtl-plugin-example: a third-party mtl-platform plugin with a weighting, ``initial_loss``, and a
logger, ``latest_json``.

This module is the plugin: the distribution's one entry point (group ``mtl_platform``)
names it, and mtl-platform calls its ``mtl_register`` hook to add the components.
"""
from mtl_platform.hookspecs import hookimpl

from .initial_loss import InitialLoss
from .latest_scalars import LatestScalars

__all__ = ["InitialLoss", "LatestScalars", "mtl_register"]


@hookimpl
def mtl_register(registry):
    registry.add_weighting(InitialLoss)
    registry.add_logger(LatestScalars)
