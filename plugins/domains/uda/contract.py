"""The seam between the UDA domain and its data families (sub-kind ``uda.data``).

A data family (``digits``, ``office31``, ``office_home``, ``visda``, ``domainnet``, or a third
party's) holds several visual domains that share one label space. A config picks the family
and the domains: ``domain.data: {name: digits, source: mnist, target: uci}``, or several
labelled sources for multi-source adaptation, ``source: [art, clipart, product]`` (spec
gradients.md §3.4); the ``uda`` domain asks the family for each source's labelled training
data, the target's unlabelled training data and the target's test data.
"""
from __future__ import annotations

import dataclasses
from typing import Any

from torch.utils.data import Dataset

from mtl_platform.contracts import Configurable
from mtl_platform.errors import UserError
from mtl_platform.params import Param


class UDAData(Configurable):
    """One family of domains with a shared label space.

    ``domains`` names the visual domains it holds; ``num_classes`` the shared classes;
    ``image_shape`` the (C, H, W) of every image it yields (after its resizing). Every family
    takes the params ``source`` (one of ``domains``, or a list of them: multi-source) and
    ``target`` (another one) plus its own. ``declared_params`` widens a family's ``source``
    parameter to accept such a list (``SourcesParam``), so a family declares it as one ``str``.

    ``load(domain, split)`` returns a dataset of ``(image float32 (C, H, W), label int64 ())``
    samples; ``split`` is ``train`` or ``test``. Where a benchmark evaluates on the target's
    training images (the Office/VisDA protocol of tllib and the GH paper), ``test`` is that
    set and says so in the docstring. Training datasets may augment; their random draws must
    be pure functions of (seed, epoch, index) — the domain calls ``set_epoch`` when it exists.
    A missing file or folder is a ``UserError`` naming ``domain.data.root``, the path and the
    expected layout, with where to get the data.
    """

    domains: tuple[str, ...] = ()
    num_classes: int = 0
    image_shape: tuple[int, int, int] = (0, 0, 0)

    def __init__(self, seed: int = 0, **params):
        self.seed = int(seed)
        self.check_ranges(params, "domain.data")
        self.config = params

    @classmethod
    def declared_params(cls) -> tuple:
        return tuple(SourcesParam.widen(p) if p.name == "source" and not isinstance(p, SourcesParam) else p
                     for p in super().declared_params())

    def sources(self) -> list[str]:
        """The labelled source domains, in the config's order (one for single-source UDA)."""
        return source_list(self.config["source"])

    def load(self, domain: str, split: str) -> Dataset:
        raise NotImplementedError


@dataclasses.dataclass(frozen=True)
class SourcesParam(Param):
    """A family's ``source``: one domain name, or a non-empty list of them (multi-source UDA).
    A single name stays a string, so single-source configs resolve (and hash) as before; each
    name of a list is checked against ``choices``. Duplicates and the target among the sources
    are ``check_pair``'s (it sees both keys)."""

    @classmethod
    def widen(cls, param: Param) -> "SourcesParam":
        fields = {f.name: getattr(param, f.name) for f in dataclasses.fields(param)}
        return cls(**dict(fields, help=f"{param.help}; or a list of them (multi-source)"))

    def type_name(self) -> str:
        return "str or list of str" + (" or null" if self.optional else "")

    def describe_allowed(self) -> str:
        if self.choices:
            return "one of " + ", ".join(repr(c) for c in self.choices) + ", or a list of them"
        return self.type_name()

    def coerce(self, value: Any, where: str) -> Any:
        if not isinstance(value, (list, tuple)):
            return super().coerce(value, where)
        if not value:
            raise UserError(f"{where}: got an empty list, expected {self.describe_allowed()}")
        return [super(SourcesParam, self).coerce(v, f"{where}[{i}]") for i, v in enumerate(value)]


def source_list(source: str | list[str]) -> list[str]:
    """``data.source`` as a list of domain names (a single name is a list of one)."""
    return [source] if isinstance(source, str) else list(source)


def check_pair(domains: tuple[str, ...], source: str | list[str], target: str) -> None:
    """``source`` (one domain of the family or a list of them) and ``target`` are different
    domains of the family, no source twice, or a one-line error."""
    sources = source_list(source)
    many = not isinstance(source, str)
    for i, value in enumerate(sources):
        if value not in domains:
            at = f"domain.data.source[{i}]" if many else "domain.data.source"
            raise UserError(f"{at}: unknown domain {value!r}; allowed: {', '.join(domains)}")
    if target not in domains:
        raise UserError(f"domain.data.target: unknown domain {target!r}; allowed: {', '.join(domains)}")
    twice = sorted({s for s in sources if sources.count(s) > 1})
    if twice:
        raise UserError(f"domain.data.source: {', '.join(map(repr, twice))} listed more than once; "
                        "each source domain once")
    if target in sources:
        what = f"equals domain.data.source ({target!r})" if not many else f"{target!r} is also a source"
        raise UserError(f"domain.data.target: {what}; adaptation needs a target that is not a source")
