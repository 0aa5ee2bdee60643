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
