"""Built-in closure methods (DESIGN.md §3.5): every module in this folder with an ``mtl_register``
is registered."""
from mtl_platform.hookspecs import hookimpl
from mtl_platform.registry import register_package


@hookimpl
def mtl_register(registry):
    register_package(registry, __name__, __path__)
