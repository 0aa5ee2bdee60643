"""Multi-task reinforcement learning on Meta-World with multi-task SAC (docs/rl.md).

Nothing here imports ``metaworld``, ``gymnasium`` or ``mujoco`` at import time: ``mtl list``
and ``mtl --help`` stay free of them; the environments are made when a run builds the domain.
"""
from mtl_platform.hookspecs import hookimpl


@hookimpl
def mtl_register(registry):
    from .domain import MetaWorld

    registry.add_domain(MetaWorld)
