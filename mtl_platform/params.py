"""Declared parameters of a component and their coercion (DESIGN.md §4, §6).

A component lists its parameters as :class:`Param` objects; the config validates and
coerces user values against them, and ``mtl list`` prints them.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any, Iterable

from .errors import UserError


class _Required:
    def __repr__(self) -> str:
        return "required"


REQUIRED: Any = _Required()

_TYPE_NAMES = {bool: "bool", int: "int", float: "float", str: "str", list: "list", dict: "mapping"}


@dataclass(frozen=True)
class Param:
    """One parameter: name, type, default (``REQUIRED`` if none), one-line help.

    ``choices`` limits the allowed values; ``item`` is the element type of a list;
    ``optional`` allows ``null``; ``minimum`` bounds numbers from below (inclusive).
    ``fields`` makes a mapping parameter a nested section (a stage's settings, say
    ``architecture.search``): its keys are validated and defaulted like a component's.
    ``kind`` makes it a sub-kind choice (DESIGN.md §3.3): a registered component of that
    kind, written as its name or as ``{name: ..., <its params>}``; the config resolves it
    against the registry (``config.resolve_choices``) and the builder instantiates it.
    """

    name: str
    type: type
    default: Any = REQUIRED
    help: str = ""
    choices: tuple | None = None
    item: type | None = None
    optional: bool = False
    minimum: float | None = None
    fields: tuple | None = None
    kind: str | None = None

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    def type_name(self) -> str:
        if self.kind is not None:
            return f"a {self.kind} (name or mapping with name)"
        name = _TYPE_NAMES.get(self.type, self.type.__name__)
        if self.type is list and self.item is not None:
            name = f"list of {_TYPE_NAMES.get(self.item, self.item.__name__)}"
        return name + (" or null" if self.optional else "")

    def describe_allowed(self) -> str:
        if self.choices:
            return "one of " + ", ".join(repr(c) for c in self.choices)
        text = self.type_name()
        if self.minimum is not None:
            text += f" >= {self.minimum}"
        return text

    def coerce(self, value: Any, where: str) -> Any:
        """Return ``value`` converted to this parameter's type, or raise :class:`UserError`."""
        if value is None:
            if self.optional:
                return None
            raise UserError(f"{where}: got null, expected {self.describe_allowed()}")
        if self.kind is not None:
            return choice_mapping(value, where)
        out = _coerce_scalar(self.type, value, where, self.describe_allowed())
        if self.fields is not None:
            return resolve_params(self.fields, out, where, reserved=())
        if self.type is list and self.item is not None:
            out = [_coerce_scalar(self.item, v, f"{where}[{i}]", _TYPE_NAMES.get(self.item, "value"))
                   for i, v in enumerate(out)]
            if self.choices:
                for i, v in enumerate(out):
                    if v not in self.choices:
                        raise UserError(f"{where}[{i}]: got {v!r}, allowed: "
                                        + ", ".join(repr(c) for c in self.choices))
        elif self.choices and out not in self.choices:
            raise UserError(f"{where}: got {value!r}, allowed: "
                            + ", ".join(repr(c) for c in self.choices) + did_you_mean(str(value), self.choices))
        if self.minimum is not None and isinstance(out, (int, float)) and out < self.minimum:
            raise UserError(f"{where}: got {value!r}, expected {self.describe_allowed()}")
        return out


def choice_mapping(value: Any, where: str) -> dict:
    """A sub-kind value as ``{name: ..., **params}`` (a bare name is shorthand)."""
    if isinstance(value, str):
        return {"name": value}
    if not isinstance(value, dict):
        raise UserError(f"{where}: got {value!r}, expected a name or a mapping with 'name'")
    if not isinstance(value.get("name"), str):
        raise UserError(f"{where}.name: missing required key (a string)")
    return dict(value)


def _coerce_scalar(kind: type, value: Any, where: str, allowed: str) -> Any:
    bad = UserError(f"{where}: got {value!r} ({type(value).__name__}), expected {allowed}")
    if kind is bool:
        if isinstance(value, bool):
            return value
        raise bad
    if kind is int:
        if isinstance(value, bool):
            raise bad
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                raise bad from None
        raise bad
    if kind is float:
        if isinstance(value, bool):
            raise bad
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):  # PyYAML reads 1e-3 as a string
            try:
                return float(value)
            except ValueError:
                raise bad from None
        raise bad
    if kind is str:
        if isinstance(value, str):
            return value
        raise bad
    if kind is list:
        if isinstance(value, (list, tuple)):
            return list(value)
        raise bad
    if kind is dict:
        if isinstance(value, dict):
            return dict(value)
        raise bad
    if isinstance(value, kind):
        return value
    raise bad


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """``" (did you mean 'x'?)"`` for the closest candidate, or ``""``."""
    close = difflib.get_close_matches(word, [str(c) for c in candidates], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def resolve_params(params: Iterable[Param], given: dict, where: str,
                   reserved: Iterable[str] = ("name",)) -> dict:
    """Validate ``given`` against ``params``: unknown keys, missing required keys, types.

    Returns a new dict with every declared parameter set (defaults filled in).
    """
    params = list(params)
    by_name = {p.name: p for p in params}
    reserved = set(reserved)
    for key in given:
        if key in reserved:
            continue
        if key not in by_name:
            allowed = sorted(by_name) + sorted(reserved)
            raise UserError(f"{where}.{key}: unknown key; allowed: {', '.join(allowed) or 'none'}"
                            + did_you_mean(str(key), allowed))
    out = {k: given[k] for k in reserved if k in given}
    for p in params:
        if p.name in given:
            out[p.name] = p.coerce(given[p.name], f"{where}.{p.name}")
        elif p.required:
            raise UserError(f"{where}.{p.name}: missing required key ({p.describe_allowed()}: {p.help})")
        elif p.fields is not None:
            out[p.name] = resolve_params(p.fields, {}, f"{where}.{p.name}", reserved=())
        elif p.kind is not None:
            out[p.name] = choice_mapping(p.default, f"{where}.{p.name}")
        else:
            out[p.name] = p.default
    return out


def section(name: str, help: str, *fields: Param) -> Param:
    """A nested section parameter (``architecture.search.epochs``): a mapping of ``fields``."""
    return Param(name, dict, {}, help, fields=tuple(fields))


def flatten(params, prefix: str = "") -> list[Param]:
    """Parameters with nested sections spelled out as dotted names, for listings and docs."""
    out = []
    for p in params:
        if p.fields is not None:
            out += flatten(p.fields, f"{prefix}{p.name}.")
        else:
            out.append(Param(prefix + p.name, p.type, p.default, p.help, p.choices, p.item, p.optional,
                             p.minimum, kind=p.kind) if prefix else p)
    return out

