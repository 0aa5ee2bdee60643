"""The thesis's synthetic multi-task regression generator, with controllable task relatedness."""
from mtl_platform.hookspecs import hookimpl


@hookimpl
def mtl_register(registry):
    from .domain import SyntheticRegression

    registry.add_domain(SyntheticRegression)
