"""Which domains of an SDG family a config trains on and tests on: ``check_domains``.

A family's config names ``source`` (one domain, or a list for multi-domain generalisation) and
``targets`` (a list, one name, or null for every domain that is not a source). Names are the
family's canonical domain names or its short aliases (DomainBed's ``P`` for PACS' ``photo``);
the result is always canonical. Each mistake is one ``UserError`` line that lists the allowed
names.
"""
from __future__ import annotations

from typing import Mapping, Sequence

from mtl_platform.errors import UserError
from mtl_platform.params import did_you_mean

__all__ = ["check_domains", "resolve_domain"]


def _allowed(names: Sequence[str], aliases: Mapping[str, str]) -> str:
    shown = ", ".join(names)
    short = [f"{a}={c}" for a, c in aliases.items() if c in names]
    return shown + (f" (aliases {', '.join(short)})" if short else "")


def resolve_domain(value, family: str, domains: Sequence[str], aliases: Mapping[str, str], where: str) -> str:
    """``value`` as a canonical domain name of ``family``, or a one-line ``UserError``."""
    if not isinstance(value, str):
        raise UserError(f"{where}: got {value!r} ({type(value).__name__}), expected a domain name of {family}: "
                        + _allowed(domains, aliases))
    if value in domains:
        return value
    if value in aliases:
        return aliases[value]
    raise UserError(f"{where}: {family} has no domain {value!r}; allowed: {_allowed(domains, aliases)}"
                    + did_you_mean(value, list(domains) + list(aliases)))


def _as_list(value, where: str) -> list:
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple)):
        return list(value)
    raise UserError(f"{where}: got {value!r} ({type(value).__name__}), expected a domain name or a list of them")


def check_domains(family: str, domains: Sequence[str], source, targets,
                  aliases: Mapping[str, str] | None = None,
                  source_domains: Sequence[str] | None = None) -> tuple[list[str], list[str]]:
    """The canonical ``(sources, targets)`` of a config, or a one-line ``UserError``.

    Refused: no source; an unknown or repeated name; a source outside ``source_domains`` (the
    domains that have training data; default: all); a target that is also a source (targets
    are unseen); an explicit empty target list, or no domain left for the default targets.
    """
    aliases = dict(aliases or {})
    source_domains = tuple(source_domains if source_domains is not None else domains)
    if source is None or (isinstance(source, (list, tuple)) and not source):
        raise UserError(f"domain.data.source: missing; the {family} source domain, one of "
                        + _allowed(source_domains, aliases))
    sources = []
    for i, value in enumerate(_as_list(source, "domain.data.source")):
        at = "domain.data.source" if isinstance(source, str) else f"domain.data.source[{i}]"
        name = resolve_domain(value, family, domains, aliases, at)
        if name not in source_domains:
            raise UserError(f"{at}: {name!r} is a test-only domain of {family} (it has no training data); "
                            f"allowed sources: {_allowed(source_domains, aliases)}")
        if name in sources:
            raise UserError(f"{at}: {name!r} is named twice; sources: {', '.join(sources + [name])}")
        sources.append(name)
    unseen = [d for d in domains if d not in sources]
    if targets is None:
        if not unseen:
            raise UserError(f"domain.data.targets: no target domain left: every domain of {family} "
                            f"({', '.join(domains)}) is a source; keep at least one out of domain.data.source")
        return sources, unseen
    chosen = []
    listed = _as_list(targets, "domain.data.targets")
    if not listed:
        raise UserError("domain.data.targets: empty; name at least one unseen domain of "
                        f"{family} ({_allowed(unseen, aliases)}), or null for all of them")
    for i, value in enumerate(listed):
        at = "domain.data.targets" if isinstance(targets, str) else f"domain.data.targets[{i}]"
        name = resolve_domain(value, family, domains, aliases, at)
        if name in sources:
            raise UserError(f"{at}: {name!r} is also a source; targets are unseen domains: "
                            f"{_allowed(unseen, aliases) or 'none left'}")
        if name in chosen:
            raise UserError(f"{at}: {name!r} is named twice; targets: {', '.join(chosen + [name])}")
        chosen.append(name)
    return sources, chosen
