"""YAML experiment configs: read, override, validate and resolve (DESIGN.md §6).

Everything is checked before anything is built: unknown keys at every level (with
"did you mean"), required keys, allowed values and each component's declared parameters.
Values are coerced to the declared types (PyYAML reads ``1e-3`` as a string).
"""
from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any, Iterable

import yaml

from . import __version__
from .errors import UserError
from .params import SEED_BOUNDS, Param, did_you_mean, resolve_params
from .registry import Registry

COMPONENT_SECTIONS = ("domain", "architecture", "weighting")
# Component sections a config may leave null (the default): null means the ordinary behaviour.
# ``closure``: a closure method (DESIGN.md §3.5: SAM, PGA, MPGA) replaces the ordinary update.
OPTIONAL_SECTIONS = ("closure",)
# ``loggers``: a list of logger components (names or mappings with ``name``), default none; how a
# run is logged, not what it learns, so it is left out of run hashes like ``output`` and ``report``.
LIST_SECTIONS = ("loggers",)

FIXED_SECTIONS: dict[str, tuple[Param, ...]] = {
    "gradients": (
        Param("mode", str, "param", "differentiate w.r.t. shared parameters or the shared representation",
              choices=("param", "rep")),
        Param("diagnostics_every", int, 50, "steps between gradient diagnostics (weights, cosines, "
              "conflicts, norms) logged to diagnostics.jsonl; 0: off", bounds="[0, inf)"),
        Param("gramian_dtype", str, "float64", "dtype task Gramians are accumulated in: float64 (exact for "
              "float32 gradients) or native (the gradients' own, faster on the CPU, but indefinite near "
              "stationary points)", choices=("float64", "native")),
        Param("gramian_path", str, "auto", "how param mode forms a Gramian-only weighting's Gramian: from the "
              "per-task Jacobian (m x P in memory), accumulated module by module without it, or auto: "
              "accumulated when the Jacobian would exceed jacobian_limit_mb", choices=("auto", "jacobian", "accumulate")),
        Param("jacobian_limit_mb", float, 512.0, "auto: the largest per-task Jacobian (MiB) the engine forms",
              bounds="(0, inf)"),
    ),
    "optimizer": (
        Param("name", str, "adam", "optimizer", choices=("sgd", "adam", "adamw")),
        Param("lr", float, 1e-3, "learning rate", bounds="(0, inf)"),
        Param("weight_decay", float, 0.0, "weight decay", bounds="[0, inf)"),
        Param("momentum", float, 0.9, "momentum (sgd)", bounds="[0, 1)"),
        Param("nesterov", bool, False, "Nesterov momentum (sgd)"),
        Param("betas", list, [0.9, 0.999], "Adam betas", item=float, bounds="[0, 1)"),
        Param("lr_mult", dict, {}, "learning-rate multipliers of the domain's parameter groups, e.g. "
              "{head: 10} (UDA: bottleneck, classifier and discriminator at 10x, as CDAN)",
              item=float, bounds="[0, inf)"),
    ),
    "scheduler": (
        Param("name", str, "none", "learning-rate schedule: step and cosine once per epoch; inv, "
              "lr·(1 + inv_gamma·i)^(−inv_power), once per training iteration i (CDAN, DANN)",
              choices=("none", "step", "cosine", "inv")),
        Param("step_size", int, 10, "epochs between decays (step)", bounds="[1, inf)"),
        Param("gamma", float, 0.1, "decay factor (step)", bounds="(0, 1]"),
        Param("eta_min", float, 0.0, "final learning rate (cosine)", bounds="[0, inf)"),
        Param("inv_gamma", float, 0.001, "γ of the inv schedule", bounds="[0, inf)"),
        Param("inv_power", float, 0.75, "power of the inv schedule", bounds="[0, inf)"),
    ),
    "train": (
        Param("epochs", int, 10, "training epochs", bounds="[1, inf)"),
        Param("seed", int, 0, "seed of weights, data order and every random draw", bounds=SEED_BOUNDS),
        Param("device", str, "auto", "where to train", choices=("auto", "cpu", "cuda")),
        Param("deterministic", bool, False, "torch.use_deterministic_algorithms (bit-for-bit on CUDA)"),
        Param("select", str, "last", "which epoch is reported: the last, or the best on validation",
              choices=("last", "val")),
        Param("log_every", int, 50, "steps between loss logs and non-finite checks", bounds="[1, inf)"),
        Param("checkpoint_every", int, 0, "also checkpoint every N steps inside an epoch (0: epoch ends only)",
              bounds="[0, inf)"),
        Param("progress", bool, True, "show tqdm progress bars"),
        Param("accumulate", int, 1, "micro-batches per optimizer step (gradient accumulation)", bounds="[1, inf)"),
        Param("amp", str, "none", "mixed precision: autocast dtype; fp16 adds a GradScaler",
              choices=("none", "bf16", "fp16")),
    ),
    "baselines": (
        Param("stl", bool, False, "train (or reuse cached) single-task counterparts and report Δp, η"),
        Param("stl_architecture", dict, None, "architecture of the single-task models (null: the default a "
              "plugin declares, see above)", kind="architecture", optional=True),
        Param("stl_weighting", dict, None, "weighting the single-task models train with (null: the default a "
              "plugin declares, see above)", kind="weighting", optional=True),
    ),
    "report": (
        Param("formats", list, ["md", "json", "png"], "report files written into the run directory (html: one "
              "self-contained page, docs/report.md)", item=str, choices=("md", "json", "png", "html")),
    ),
    "plugins": (
        Param("disable", list, [], "plugins (entry-point names) or components (kind:name, or kind:name@plugin) to block",
              item=str),
    ),
    "output": (
        Param("root", str, "runs", "where run directories are created"),
        Param("name", str, None, "run name (default: the config file's name)", optional=True),
    ),
}

SECTIONS = COMPONENT_SECTIONS + OPTIONAL_SECTIONS + LIST_SECTIONS + tuple(FIXED_SECTIONS)
REQUIRED_SECTIONS = ("domain",)
# Keys whose component, when a config gives none, is the one a plugin declares
# (``Registry.set_default``): the core names no component itself.
DEFAULTED_KEYS = ("architecture", "weighting", "baselines.stl_architecture", "baselines.stl_weighting")
# The single-task models' sections: config section -> its key under ``baselines``.
STL_KEYS = {"architecture": "stl_architecture", "weighting": "stl_weighting"}
# Keys that change how a run is logged but not what it learns (left out of hashes).
NON_DEFINING = {("train", "log_every"), ("train", "checkpoint_every"), ("train", "progress"),
                ("gradients", "diagnostics_every")}
# Keys added after runs were recorded whose null is the behaviour from before they existed:
# left out of hashes while null, so existing run directories, sweeps and report groups match.
HASHED_WHEN_SET = {("baselines", "stl_architecture"), ("baselines", "stl_weighting")}


def read_yaml(path: str | Path) -> dict:
    """Read a config file with ``safe_load``; one clear line for every way it can be wrong."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise UserError(f"{path}: config file not found") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read config file ({type(exc).__name__})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise UserError(f"{path}: malformed YAML{where}: {problem}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UserError(f"{path}: a config must be a mapping of sections, got {type(data).__name__}")
    return data


def apply_overrides(raw: dict, sets: Iterable[str]) -> tuple[dict, list[str]]:
    """Apply ``--set a.b=c`` overrides (value read as a YAML scalar); return (config, keys set)."""
    out = copy.deepcopy(raw)
    keys = []
    for item in sets:
        key, eq, value = item.partition("=")
        parts = key.strip().split(".")
        if not eq or not all(parts):
            raise UserError(f"--set {item!r}: expected key.path=value, e.g. --set optimizer.lr=0.01")
        if parts[0] not in SECTIONS:
            raise UserError(f"--set {key}: unknown section {parts[0]!r}{did_you_mean(parts[0], SECTIONS)}; "
                            f"sections: {', '.join(SECTIONS)}")
        try:
            parsed = yaml.safe_load(value) if value.strip() else None
        except yaml.YAMLError:
            parsed = value
        node = out
        for i, part in enumerate(parts[:-1]):
            child = node.get(part)
            if isinstance(child, str) and i == 0 and part in COMPONENT_SECTIONS + OPTIONAL_SECTIONS:
                child = {"name": child}
            if child is None:
                child = {}
            if not isinstance(child, dict):
                raise UserError(f"--set {key}: {'.'.join(parts[:i + 1])} is not a mapping")
            node[part] = child
            node = child
        node[parts[-1]] = parsed
        keys.append(".".join(parts))
    return out, keys


def disabled_plugins(raw: dict, extra: Iterable[str] = ()) -> list[str]:
    """The ``plugins.disable`` list (plus ``--disable``), read before plugins are loaded."""
    section = raw.get("plugins") or {}
    if not isinstance(section, dict):
        raise UserError(f"plugins: got {section!r}, expected a mapping")
    found = Param("disable", list, [], item=str).coerce(section.get("disable", []) or [], "plugins.disable")
    return list(dict.fromkeys(found + list(extra)))


def _component(raw: Any, section: str, registry: Registry) -> dict:
    if raw is None:
        raw = registry.default(section)
        if raw is None:
            raise UserError(f"{section}: missing required section (name one of: "
                            f"{', '.join(registry.names(section))})")
    return resolve_component(section, raw, section, registry)


def resolve_component(kind: str, raw: Any, where: str, registry: Registry) -> dict:
    """A component of ``kind`` given as a name or a mapping with ``name``, validated against its
    declared parameters (defaults filled, sub-kinds resolved); errors name ``where``."""
    if isinstance(raw, str):
        raw = {"name": raw}
    if not isinstance(raw, dict):
        raise UserError(f"{where}: got {raw!r}, expected a name or a mapping with 'name'")
    name = raw.get("name")
    if name is None:
        raise UserError(f"{where}.name: missing required key (one of: {', '.join(registry.names(kind))})")
    if not isinstance(name, str):
        raise UserError(f"{where}.name: got {name!r}, expected a string")
    comp = registry.get(kind, name, where=f"{where}.name")
    return resolve_choices(comp.params, resolve_params(comp.params, raw, where), where, registry)


def stl_sections(config: dict, registry: Registry) -> dict:
    """``{"architecture": ..., "weighting": ...}`` of the single-task (STL) models: the config's
    ``baselines.stl_architecture`` and ``baselines.stl_weighting`` or, where null, the
    components the plugins declare at those keys, resolved like a user's sections."""
    given = config.get("baselines") or {}
    out = {}
    for section, key in STL_KEYS.items():
        chosen = given.get(key)
        if chosen is None:
            chosen = registry.default(f"baselines.{key}")
            if chosen is None:
                raise UserError(f"baselines.{key}: required, no plugin declares a default (name one of: "
                                f"{', '.join(registry.names(section))})")
        out[section] = resolve_component(section, chosen, f"baselines.{key}", registry)
    return out


def resolve_choices(params: Iterable[Param], resolved: dict, where: str, registry: Registry) -> dict:
    """Resolve the sub-kind parameters (``Param.kind``) of ``resolved`` against the registry:
    each becomes ``{name: ..., **its validated params}`` (its own sub-kinds resolved too)."""
    for p in params:
        if p.kind is None or p.name not in resolved or resolved[p.name] is None:
            continue
        at = f"{where}.{p.name}"
        given = resolved[p.name]
        comp = registry.get(p.kind, given["name"], where=f"{at}.name")
        resolved[p.name] = resolve_choices(comp.params, resolve_params(comp.params, given, at), at, registry)
    return resolved


def choices_of(params: Iterable[Param], resolved: dict, registry: Registry) -> dict:
    """``{param: "plugin:module"}`` of every sub-kind chosen in ``resolved`` (for the config hash)."""
    out = {}
    for p in params:
        value = resolved.get(p.name)
        if p.kind is not None and isinstance(value, dict):
            c = registry.get(p.kind, value["name"])
            out[p.name] = f"{c.plugin}:{c.module}"
    return out


def resolve(raw: dict, registry: Registry, name: str | None = None, overridden: Iterable[str] = ()) -> dict:
    """Validate ``raw`` and return the resolved config: every section present, defaults filled."""
    try:
        return _resolve(raw, registry, name)
    except UserError as exc:
        message = str(exc)
        for key in overridden:
            if message.startswith(key):
                raise UserError(f"--set {message}") from None
        raise


def _resolve(raw: dict, registry: Registry, name: str | None) -> dict:
    for key in raw:
        if key not in SECTIONS:
            raise UserError(f"{key}: unknown section{did_you_mean(str(key), SECTIONS)}; "
                            f"sections: {', '.join(SECTIONS)}")
    for key in REQUIRED_SECTIONS:
        if raw.get(key) is None:
            raise UserError(f"{key}: missing required section")
    for key, (_, plugin) in registry.defaults().items():
        if key not in DEFAULTED_KEYS:
            raise UserError(f"plugin {plugin!r} declares a default for {key!r}, which takes none; "
                            f"keys that do: {', '.join(DEFAULTED_KEYS)}")
    out: dict[str, Any] = {}
    for section in COMPONENT_SECTIONS:
        given = raw.get(section)
        if given is None and section == "weighting" and out.get("architecture"):
            # a searched architecture may bring its own default (CoNAL: RLW; DSMTL-AL: learned weights)
            given = registry.get("architecture", out["architecture"]["name"]).cls.default_weighting
        out[section] = _component(given, section, registry)
    for section in OPTIONAL_SECTIONS:
        given = raw.get(section)
        out[section] = None if given is None else resolve_component(section, given, section, registry)
    out["loggers"] = resolve_loggers(raw.get("loggers"), registry)
    for section, params in FIXED_SECTIONS.items():
        given = raw.get(section)
        if given is None:
            given = {}
        if not isinstance(given, dict):
            raise UserError(f"{section}: got {given!r}, expected a mapping")
        out[section] = resolve_choices(params, resolve_params(params, given, section, reserved=()), section, registry)
    if out["baselines"]["stl"]:
        stl_sections(out, registry)  # the single-task models are checked now, before anything is built
    if out["output"]["name"] is None:
        out["output"]["name"] = name or "run"
    return out


def resolve_loggers(given: Any, registry: Registry) -> list[dict]:
    """The ``loggers`` list: each entry a logger's name or a mapping with ``name`` and its
    parameters, validated like any component; a logger named twice is refused."""
    if given is None:
        return []
    if isinstance(given, (str, dict)):
        given = [given]
    if not isinstance(given, list):
        raise UserError(f"loggers: got {given!r}, expected a list of logger names "
                        f"(known: {', '.join(registry.names('logger')) or 'none registered'})")
    out = [resolve_component("logger", item, f"loggers[{i}]", registry) for i, item in enumerate(given)]
    names = [entry["name"] for entry in out]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise UserError(f"loggers[{i}]: logger {name!r} is listed twice")
    return out


def defining(config: dict) -> dict:
    """The part of a resolved config that defines what is learned (no output, report, plugins, logging)."""
    out = {k: copy.deepcopy(v) for k, v in config.items()
           if k not in ("output", "report", "plugins") + LIST_SECTIONS}
    for section, key in NON_DEFINING:
        out.get(section, {}).pop(key, None)
    for section, key in HASHED_WHEN_SET:
        if out.get(section, {}).get(key) is None:
            out.get(section, {}).pop(key, None)
    for section in OPTIONAL_SECTIONS:  # null is the behaviour from before the section existed
        if out.get(section, "absent") is None:
            del out[section]
    return out


def config_hash(config: dict, *, without: Iterable[tuple[str, str]] = (), registry: Registry | None = None) -> str:
    """SHA-256 of the canonical defining config plus the platform's version and, given a
    registry, the plugin and module each named component came from (a third-party
    replacement of a built-in is a different experiment)."""
    body = defining(config)
    for section, key in without:
        body.get(section, {}).pop(key, None)
    origin = None
    if registry is not None:
        origin = {s: f"{c.plugin}:{c.module}" for s in COMPONENT_SECTIONS
                  for c in [registry.get(s, config[s]["name"])]}
        sub = {s: choices_of(registry.get(s, config[s]["name"]).params, config[s], registry)
               for s in COMPONENT_SECTIONS}
        origin.update({f"{s}.{k}": v for s, found in sub.items() for k, v in found.items()})
        for s in OPTIONAL_SECTIONS:
            if config.get(s) is not None:
                c = registry.get(s, config[s]["name"])
                origin[s] = f"{c.plugin}:{c.module}"
    text = json.dumps({"config": body, "version": __version__, "components": origin},
                      sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def dump(config: dict) -> str:
    return yaml.safe_dump(config, sort_keys=False, default_flow_style=False)

