"""Declared parameters of a component and their coercion (DESIGN.md §4, §6).

A component lists its parameters as :class:`Param` objects; the config validates and
coerces user values against them, and ``mtl list`` prints them.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import re
from dataclasses import dataclass
from typing import Any, Iterable

from .errors import UserError


class _Required:
    def __repr__(self) -> str:
        return "required"


REQUIRED: Any = _Required()

#: the bounds of every seed: numpy's seed range (``np.random.seed``, ``default_rng``), 32 bits
SEED_BOUNDS = "[0, 4294967295]"

_TYPE_NAMES = {bool: "bool", int: "int", float: "float", str: "str", list: "list", dict: "mapping"}
_NUMBER_NAMES = {int: "int", float: "finite float"}
_INTERVAL = re.compile(r"^\s*([\[(])\s*([^,\s]+)\s*,\s*([^\])\s]+)\s*([\])])\s*$")


def _endpoint(token: str) -> float:
    try:
        return int(token)
    except ValueError:
        return float(token)


@dataclass(frozen=True)
class Interval:
    """The numbers a parameter allows, declared as in mathematics: ``"[0, 1)"`` is 0 ≤ x < 1,
    ``"(0, inf)"`` is x > 0, ``"[1, inf)"`` is x ≥ 1, ``"(-inf, inf)"`` any (finite) number.
    An infinite end is always open: non-finite values are never allowed."""

    low: float
    high: float
    low_open: bool
    high_open: bool

    @classmethod
    def parse(cls, text: str) -> "Interval":
        match = _INTERVAL.match(text)
        if not match:
            raise ValueError(f"bounds {text!r}: expected an interval such as '[0, 1)' or '(0, inf)'")
        left, low, high, right = match.groups()
        try:
            out = cls(_endpoint(low), _endpoint(high), left == "(", right == ")")
        except ValueError:
            raise ValueError(f"bounds {text!r}: the ends must be numbers, inf or -inf") from None
        if math.isnan(out.low) or math.isnan(out.high) or out.low > out.high:
            raise ValueError(f"bounds {text!r}: the lower end must not exceed the upper end")
        if (math.isinf(out.low) and not out.low_open) or (math.isinf(out.high) and not out.high_open):
            raise ValueError(f"bounds {text!r}: an infinite end must be open, e.g. '[0, inf)'")
        if out.low == out.high and (out.low_open or out.high_open):
            raise ValueError(f"bounds {text!r}: an empty interval")
        return out

    def __contains__(self, x: float) -> bool:
        above = x > self.low if self.low_open else x >= self.low
        below = x < self.high if self.high_open else x <= self.high
        return above and below

    def __str__(self) -> str:
        return (("(" if self.low_open else "[") + f"{self.low}, {self.high}"
                + (")" if self.high_open else "]"))

    def describe(self) -> str:
        """``">= 1"``, ``"> 0"``, ``"in [0, 1)"``, or ``""`` when both ends are infinite."""
        low, high = math.isinf(self.low), math.isinf(self.high)
        if low and high:
            return ""
        if high:
            return (">" if self.low_open else ">=") + f" {self.low}"
        if low:
            return ("<" if self.high_open else "<=") + f" {self.high}"
        return f"in {self}"


@dataclass(frozen=True)
class Param:
    """One parameter: name, type, default (``REQUIRED`` if none), one-line help.

    ``choices`` limits the allowed values; ``item`` is the element type of a list, or the
    value type of a mapping; ``optional`` allows ``null``. ``bounds`` is the interval every
    number must lie in (:class:`Interval`, written ``"[0, 1)"``): of the value for an ``int``
    or ``float``, of each element or value for a list or mapping of numbers. Every numeric
    parameter declares ``bounds`` (or ``choices``); a float must also be finite (``nan``,
    ``inf`` and ``-inf`` are always refused). ``minimum=x`` is short for ``bounds="[x, inf)"``.
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
    bounds: Interval | str | None = None

    def __post_init__(self):
        bounds = Interval.parse(self.bounds) if isinstance(self.bounds, str) else self.bounds
        if self.minimum is not None:
            if bounds is not None:
                raise ValueError(f"parameter {self.name!r}: give bounds or minimum, not both")
            bounds = Interval(self.minimum, math.inf, False, True)
            object.__setattr__(self, "minimum", None)
        if bounds is not None and self.number_type is None:
            raise ValueError(f"parameter {self.name!r}: bounds need an int or float (or a list or mapping of them)")
        object.__setattr__(self, "bounds", bounds)

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    @property
    def number_type(self) -> type | None:
        """``int`` or ``float`` for a numeric parameter (or list or mapping of numbers), else None."""
        kind = self.item if self.type in (list, dict) else self.type
        return kind if kind in (int, float) and self.kind is None else None

    def type_name(self) -> str:
        if self.kind is not None:
            article = "an" if self.kind[0] in "aeio" else "a"
            return f"{article} {self.kind} (name or mapping with name)" + (" or null" if self.optional else "")
        name = _TYPE_NAMES.get(self.type, self.type.__name__)
        if self.type is list and self.item is not None:
            name = f"list of {_TYPE_NAMES.get(self.item, self.item.__name__)}"
        return name + (" or null" if self.optional else "")

    def describe_allowed(self) -> str:
        if self.choices:
            return "one of " + ", ".join(repr(c) for c in self.choices)
        if self.number_type is None:
            return self.type_name()
        if self.type in (list, dict):
            text = ("list of " if self.type is list else "mapping to ") + _NUMBER_NAMES[self.item]
            if self.bounds is not None and self.bounds.describe():
                text += ", each " + self.bounds.describe()
        else:
            text = self.describe_number()
        return text + (" or null" if self.optional else "")

    def describe_number(self) -> str:
        """What one number of this parameter may be: ``"finite float in [0, 1)"``, ``"int >= 1"``."""
        text = _NUMBER_NAMES[self.number_type]
        if self.bounds is not None and self.bounds.describe():
            text += " " + self.bounds.describe()
        return text

    def check_number(self, value: Any, where: str, shown: Any = None) -> None:
        """Refuse (:class:`UserError`) a number outside ``bounds``, or a non-finite float."""
        if isinstance(value, float) and not math.isfinite(value) or (
                self.bounds is not None and value not in self.bounds):
            raise UserError(f"{where}: got {_show(value if shown is None else shown)}, "
                            f"expected {self.describe_number()}")

    def check_range(self, value: Any, where: str) -> None:
        """The number checks of :meth:`coerce` alone, for values that are already numbers
        (a component built in-process); anything else is left to the component."""
        if self.fields is not None and isinstance(value, dict):
            for field in self.fields:
                if field.name in value:
                    field.check_range(value[field.name], f"{where}.{field.name}")
            return
        if self.number_type is None or value is None:
            return
        if self.type is list and isinstance(value, (list, tuple)):
            items = [(f"{where}[{i}]", v) for i, v in enumerate(value)]
        elif self.type is dict and isinstance(value, dict):
            items = [(f"{where}.{k}", v) for k, v in value.items()]
        else:
            items = [(where, value)]
        for at, v in items:
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                self.check_number(v, at)

    def _coerce_item(self, value: Any, where: str) -> Any:
        if self.number_type is None:
            return _coerce_scalar(self.item, value, where, _TYPE_NAMES.get(self.item, "value"))
        out = _coerce_scalar(self.item, value, where, self.describe_number())
        self.check_number(out, where, shown=value)
        return out

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
            out = [self._coerce_item(v, f"{where}[{i}]") for i, v in enumerate(out)]
            if self.choices:
                for i, v in enumerate(out):
                    if v not in self.choices:
                        raise UserError(f"{where}[{i}]: got {v!r}, allowed: "
                                        + ", ".join(repr(c) for c in self.choices))
            return out
        if self.type is dict and self.item is not None:
            # an int where floats are declared is kept as written, so that mappings such as
            # optimizer.lr_mult: {head: 10} resolve (and hash) as they always did
            checked = {k: self._coerce_item(v, f"{where}.{k}") for k, v in out.items()}
            return {k: out[k] if _is_int(out[k]) else v for k, v in checked.items()}
        if self.choices and out not in self.choices:
            raise UserError(f"{where}: got {value!r}, allowed: "
                            + ", ".join(repr(c) for c in self.choices) + did_you_mean(str(value), self.choices))
        if self.number_type is not None:
            self.check_number(out, where, shown=value)
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


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _show(value: Any, limit: int = 60) -> str:
    """``repr(value)``, cut to ``limit`` characters (a 400-digit number stays one short line)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _coerce_scalar(kind: type, value: Any, where: str, allowed: str) -> Any:
    bad = UserError(f"{where}: got {_show(value)} ({type(value).__name__}), expected {allowed}")
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
            try:
                return float(value)
            except OverflowError:  # an int too large for a float: not finite
                return math.inf
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
        elif p.kind is not None and p.default is not None:
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
            out.append(dataclasses.replace(p, name=prefix + p.name) if prefix else p)
    return out

