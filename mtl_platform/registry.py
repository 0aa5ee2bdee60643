"""The component registry, filled by pluggy plugins from the ``mtl_platform``
entry-point group (DESIGN.md §4). Built-ins arrive exactly like third-party plugins.
"""
from __future__ import annotations

import importlib
import importlib.metadata
import pkgutil
import re
from dataclasses import dataclass
from typing import Iterable

import pluggy

from . import hookspecs
from .errors import UserError
from .params import did_you_mean

ENTRY_POINT_GROUP = "mtl_platform"
#: the distribution whose entry points are the built-in plugins
BUILTIN_DISTRIBUTION = "mtl-platform"
CORE_KINDS = ("architecture", "weighting", "domain", "logger", "closure")


@dataclass(frozen=True)
class Component:
    """A registered class with the plugin (and module) it came from."""

    kind: str
    name: str
    cls: type
    plugin: str
    module: str

    @property
    def params(self):
        return tuple(self.cls.declared_params())

    @property
    def summary(self) -> str:
        """The docstring's first paragraph, on one line."""
        doc = (self.cls.__doc__ or "").strip()
        return " ".join(line.strip() for line in doc.split("\n\n")[0].splitlines())


class Registry:
    """Components by kind and name. Duplicate names are an error naming both plugins.

    ``disabled_components`` holds ``kind:name`` (blocked from every plugin) or
    ``kind:name@plugin`` (blocked from that plugin only, so another can replace it).
    """

    def __init__(self, disabled_components: Iterable[str] = ()):
        self._items: dict[str, dict[str, Component]] = {k: {} for k in CORE_KINDS}
        self._defaults: dict[str, tuple[str, str]] = {}  # config key -> (component name, declaring plugin)
        self._disabled = set(disabled_components)
        self._seen_disabled: set[str] = set()
        self._plugin = "<in-process>"

    def bound(self, plugin: str) -> "Registry":
        """This registry, recording ``plugin`` as the source of what is added next."""
        self._plugin = plugin
        return self

    def add(self, kind: str, cls: type, name: str | None = None) -> None:
        name = name or getattr(cls, "name", None)
        if not name or not isinstance(name, str):
            raise UserError(f"plugin {self._plugin!r}: {cls.__qualname__} has no 'name'")
        key = f"{kind}:{name}"
        for blocked in (key, f"{key}@{self._plugin}"):
            if blocked in self._disabled:
                self._seen_disabled.add(blocked)
                return
        table = self._items.setdefault(kind, {})
        if name in table:
            other = table[name]
            raise UserError(f"duplicate {kind} {name!r}: registered by plugin {other.plugin!r} "
                            f"({other.module}) and by plugin {self._plugin!r} ({cls.__module__}); "
                            f"disable one with plugins.disable: [{kind}:{name}@{other.plugin}]")
        table[name] = Component(kind, name, cls, self._plugin, cls.__module__)

    def add_architecture(self, cls: type) -> None:
        self.add("architecture", cls)

    def add_weighting(self, cls: type) -> None:
        self.add("weighting", cls)

    def add_domain(self, cls: type) -> None:
        self.add("domain", cls)

    def add_closure(self, cls: type) -> None:
        """A closure method (DESIGN.md §3.5: SAM, PGA, MPGA), the config's ``closure`` section."""
        self.add("closure", cls)

    def add_logger(self, cls: type) -> None:
        """A logger (``mtl_platform.contracts.Logger``), selected by the config's ``loggers`` list."""
        self.add("logger", cls)

    def set_default(self, key: str, name: str) -> None:
        """Declare ``name`` the component a config gets at ``key`` when it gives none (the keys
        that take one: ``config.DEFAULTED_KEYS``). The core names no component itself: the
        defaults are data a plugin declares, the built-ins like any other. The name is looked
        up when a config is resolved, so a replacement registered under the same name serves
        too. Two plugins declaring different names for one key is an error naming both."""
        known = self._defaults.get(key)
        if known is not None and known[0] != name:
            raise UserError(f"conflicting defaults for {key}: plugin {known[1]!r} declares {known[0]!r} and plugin "
                            f"{self._plugin!r} declares {name!r}; disable one of the plugins with plugins.disable")
        self._defaults.setdefault(key, (name, self._plugin))

    def default(self, key: str) -> str | None:
        """The name a plugin declared the default at ``key``, or None."""
        known = self._defaults.get(key)
        return known[0] if known else None

    def defaults(self) -> dict[str, tuple[str, str]]:
        """Every declared default: ``{key: (name, plugin)}``."""
        return dict(self._defaults)

    def kinds(self) -> list[str]:
        return list(self._items)

    def names(self, kind: str) -> list[str]:
        return sorted(self._items.get(kind, {}))

    def components(self, kind: str) -> list[Component]:
        return [self._items[kind][n] for n in self.names(kind)]

    def get(self, kind: str, name: str, where: str | None = None) -> Component:
        table = self._items.get(kind)
        if table is None:
            raise UserError(f"unknown component kind {kind!r}; known: {', '.join(self.kinds())}")
        if name not in table:
            where = where or kind
            known = ", ".join(sorted(table)) or "none registered"
            hint = did_you_mean(str(name), table)
            if any(d == f"{kind}:{name}" or d.startswith(f"{kind}:{name}@") for d in self._disabled):
                hint = " (it is disabled by plugins.disable)"
            raise UserError(f"{where}: unknown {kind} {name!r}{hint}; known: {known}")
        return table[name]

    def unused_disables(self) -> set[str]:
        return {d for d in self._disabled if d not in self._seen_disabled}


def register_package(registry: Registry, package: str, path: Iterable[str]) -> None:
    """Import every module of a plugin package and call its ``mtl_register``.

    Built-in kinds use this, so a new file in ``plugins/weightings/`` is found without
    reinstalling. A module that fails to import is named in one line.
    """
    for info in sorted(pkgutil.iter_modules(list(path)), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        full = f"{package}.{info.name}"
        try:
            module = importlib.import_module(full)
        except Exception as exc:  # noqa: BLE001 - reported as one line
            raise UserError(f"plugin module {full} failed to import: {type(exc).__name__}: {exc}") from exc
        register = getattr(module, "mtl_register", None)
        if register is not None:
            register(registry=registry)


def distribution_of(ep) -> str | None:
    """The normalised name (PEP 503) of the distribution that declares entry point ``ep``."""
    dist = getattr(ep, "dist", None)
    name = getattr(dist, "name", None)
    return re.sub(r"[-_.]+", "-", name).lower() if name else None


def _entry_points(builtin_only: bool = False):
    seen = set()
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if (ep.name, ep.value) in seen:
            continue
        if builtin_only and distribution_of(ep) != BUILTIN_DISTRIBUTION:
            continue
        seen.add((ep.name, ep.value))
        yield ep


def build_plugin_manager(disable: Iterable[str] = (), extra_plugins: Iterable = (),
                         builtin_only: bool = False) -> pluggy.PluginManager:
    """Load the entry-point plugins (minus the disabled ones; with ``builtin_only``, those of
    the ``mtl-platform`` distribution alone) and any in-process plugins."""
    disable = list(disable)
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    blocked = {d for d in disable if ":" not in d}
    for ep in _entry_points(builtin_only):
        if ep.name in blocked:
            pm.set_blocked(ep.name)
            continue
        if pm.has_plugin(ep.name):
            continue
        try:
            plugin = ep.load()
        except Exception as exc:  # noqa: BLE001 - reported as one line
            dist = getattr(getattr(ep, "dist", None), "name", "?")
            raise UserError(f"plugin {ep.name!r} (distribution {dist}) failed to import: "
                            f"{type(exc).__name__}: {exc}") from exc
        pm.register(plugin, name=ep.name)
    for plugin in extra_plugins:
        base = getattr(plugin, "__name__", None) or type(plugin).__name__
        if base in blocked:
            continue
        name, i = base, 1
        while pm.has_plugin(name):  # two instances of one callback class
            i += 1
            name = f"{base}-{i}"
        pm.register(plugin, name=name)
    return pm


def build_registry(pm: pluggy.PluginManager, disable: Iterable[str] = (), builtin_only: bool = False) -> Registry:
    """Call every plugin's ``mtl_register``, one at a time, so each component knows its plugin."""
    disable = list(disable)
    registry = Registry(d for d in disable if ":" in d)
    for impl in reversed(pm.hook.mtl_register.get_hookimpls()):
        impl.function(registry=registry.bound(impl.plugin_name))
    known_plugins = {name for name, _ in pm.list_name_plugin()} | {
        ep.name for ep in _entry_points(builtin_only)}
    for d in disable:
        if ":" in d:
            continue
        if d not in known_plugins:
            raise UserError(f"plugins.disable: no plugin named {d!r}{did_you_mean(d, known_plugins)}; "
                            f"plugins: {', '.join(sorted(known_plugins))}")
    for d in sorted(registry.unused_disables()):
        kind, _, name = d.partition(":")
        candidates = [f"{k}:{n}" for k in registry.kinds() for n in registry.names(k)]
        raise UserError(f"plugins.disable: no component {d!r}{did_you_mean(d, candidates)}")
    return registry


def load(disable: Iterable[str] = (), extra_plugins: Iterable = (),
         builtin_only: bool = False) -> tuple[Registry, pluggy.PluginManager]:
    """The registry and plugin manager for one process or run.

    ``builtin_only=True`` loads the built-in plugins alone (the entry points of the
    ``mtl-platform`` distribution itself), whatever third-party plugins are installed, plus
    ``extra_plugins``: what the docs' catalogues and tests about the exact set of built-in
    components use, so they hold on any machine.
    """
    disable = list(disable)
    pm = build_plugin_manager(disable, extra_plugins, builtin_only)
    return build_registry(pm, disable, builtin_only), pm
