"""Built-in loggers (``loggers: [tensorboard, csv]`` in a config): every module in this folder with an
``mtl_register`` is registered, exactly like a third-party logger (docs/writing-a-plugin.md)."""
from mtl_platform.hookspecs import hookimpl
from mtl_platform.registry import register_package


@hookimpl
def mtl_register(registry):
    register_package(registry, __name__, __path__)
