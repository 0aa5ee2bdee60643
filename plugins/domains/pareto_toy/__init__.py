"""The two-objective toy problem of CAGrad and Nash-MTL, with its analytic Pareto front."""
from mtl_platform.hookspecs import hookimpl


@hookimpl
def mtl_register(registry):
    from .domain import ParetoToy

    registry.add_domain(ParetoToy)
