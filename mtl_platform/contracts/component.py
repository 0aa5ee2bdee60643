"""What every registered component shares: a name and declared parameters (DESIGN.md §4)."""
from __future__ import annotations


class Configurable:
    """A registered class: ``name``, ``params`` (a tuple of :class:`~mtl_platform.params.Param`).

    ``base_params`` are the parameters the contract itself adds to every component of a kind
    (e.g. a domain's ``batch_size``); ``declared_params()`` is what the config validates.
    """

    name: str = ""
    params: tuple = ()
    base_params: tuple = ()

    @classmethod
    def declared_params(cls) -> tuple:
        own = {p.name for p in cls.params}
        return tuple(p for p in cls.base_params if p.name not in own) + tuple(cls.params)

    @classmethod
    def check_ranges(cls, given: dict, where: str) -> None:
        """Refuse (``UserError``) a number in ``given`` outside its parameter's declared
        ``bounds``, or a non-finite float: the config's own check (``Param.check_range``), for a
        component built in-process. The contracts' ``__init__`` call it; ``where`` is the
        config key of the component (``weighting``, ``domain.method``, ...)."""
        declared = {p.name: p for p in cls.declared_params()}
        for key, value in given.items():
            if key in declared:
                declared[key].check_range(value, f"{where}.{key}")
