"""What every registered component shares: a name and declared parameters (DESIGN.md §4)."""
from __future__ import annotations

import inspect

from ..errors import UserError


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

    def set_params(self, given: dict, where: str) -> dict:
        """Set every declared parameter as an attribute of the same name and return them all.

        Each value is ``given[name]``, else the declared default, converted and checked as the
        config does it (``Param.coerce``: the declared type — float, int, bool, str, list or
        mapping — its ``choices`` and ``bounds``), so a component built in-process gets exactly
        what a config would give it; ``None`` stays ``None`` for an optional parameter or one
        whose default is ``None``. A missing required parameter, a wrong type or a value out of
        range is a ``UserError`` naming ``where.name``. A parameter named like a method or
        property of the class (``fixed``'s ``weights``) is not set as an attribute, which
        would hide it: read it from the returned mapping. Keys of ``given`` that are not
        declared are kept in the mapping and set nowhere.
        """
        values = dict(given)
        for p in self.declared_params():
            at = f"{where}.{p.name}"
            if p.name in given:
                value = given[p.name]
            elif p.required:
                raise UserError(f"{at}: missing required key ({p.describe_allowed()}: {p.help})")
            else:
                value = p.default
            if value is not None or not (p.optional or p.default is None):
                value = p.coerce(value, at)
            values[p.name] = value
            if not _names_a_method(type(self), p.name):
                setattr(self, p.name, value)
        return values


def _names_a_method(cls: type, name: str) -> bool:
    attr = inspect.getattr_static(cls, name, None)
    return callable(attr) or isinstance(attr, (property, staticmethod, classmethod))
