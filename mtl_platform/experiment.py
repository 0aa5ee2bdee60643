"""Compose a resolved config into domain, model, weighting, engine and optimizer (DESIGN.md §1).

Nothing here names a method: every component comes from the registry.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .checkpoint import seed_everything
from .contracts import Architecture, ClosureMethod, Domain, Weighting
from .errors import UserError
from .gradients import GradientEngine
from .optim import build_optimizer, build_scheduler
from .registry import Registry


@dataclass
class Experiment:
    config: dict
    domain: Domain
    model: Architecture
    weighting: Weighting
    engine: GradientEngine
    optimizers: list
    scheduler: object
    device: torch.device
    #: the config's closure method (DESIGN.md §3.5), or None: the domain's own update protocol
    closure: ClosureMethod | None = None


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("train.device: 'cuda' requested but no CUDA device is available; allowed here: auto, cpu")
    return torch.device(name)


def _kwargs(section: dict) -> dict:
    return {k: v for k, v in section.items() if k != "name"}


def build_choices(params, section: dict, registry: Registry, seed: int) -> dict:
    """``section``'s keyword arguments with each sub-kind (``Param.kind``) built: its class
    from the registry, called with ``seed`` and its own (recursively built) parameters."""
    kwargs = _kwargs(section)
    for p in params:
        value = kwargs.get(p.name)
        if p.kind is not None and isinstance(value, dict):
            cls = registry.get(p.kind, value["name"]).cls
            kwargs[p.name] = cls(seed=seed, **build_choices(cls.declared_params(), value, registry, seed))
    return kwargs


def build_domain(config: dict, registry: Registry) -> Domain:
    comp = registry.get("domain", config["domain"]["name"])
    seed = config["train"]["seed"]
    domain = comp.cls(seed=seed, **build_choices(comp.params, config["domain"], registry, seed))
    domain.prepare()
    return domain


def build_architecture(config: dict, registry: Registry, domain: Domain) -> Architecture:
    """The configured architecture, built from the domain's encoder and head factories (through
    ``Domain.compose``, where a domain that trains several networks builds each of them)."""
    arch = registry.get("architecture", config["architecture"]["name"]).cls
    wcls = registry.get("weighting", config["weighting"]["name"]).cls
    def architecture(encoder_factory, head_factory):
        return arch(domain.task_names, encoder_factory, head_factory, **_kwargs(config["architecture"]))

    architecture.architecture_name = config["architecture"]["name"]  # a domain may refuse one (detection)
    return domain.compose(architecture, lambda: wcls(domain.task_names, **_kwargs(config["weighting"])))


def build_experiment(config: dict, registry: Registry, domain: Domain | None = None) -> Experiment:
    train = config["train"]
    device = resolve_device(train["device"])
    seed_everything(train["seed"], train["deterministic"])
    domain = domain or build_domain(config, registry)
    model: nn.Module = build_architecture(config, registry, domain).to(device)
    wcls = registry.get("weighting", config["weighting"]["name"]).cls
    weighting = wcls(domain.task_names, **_kwargs(config["weighting"])).to(device)
    scaler = torch.amp.GradScaler(device.type) if train["amp"] == "fp16" else None
    if train["checkpoint_every"] % train["accumulate"]:
        raise UserError(f"train.checkpoint_every: got {train['checkpoint_every']}, expected a multiple of "
                        f"train.accumulate ({train['accumulate']}) so checkpoints fall on optimizer steps")
    engine = GradientEngine(model, weighting, domain.task_names, config["gradients"]["mode"],
                            diagnostics_every=config["gradients"]["diagnostics_every"], scaler=scaler,
                            gramian_dtype=config["gradients"]["gramian_dtype"],
                            gramian_path=config["gradients"]["gramian_path"],
                            jacobian_limit_mb=config["gradients"]["jacobian_limit_mb"],
                            accumulate=train["accumulate"])
    groups = None
    if config["optimizer"]["lr_mult"]:
        groups = domain.parameter_groups(model)
        for name in config["optimizer"]["lr_mult"]:
            if name not in groups:
                raise UserError(f"optimizer.lr_mult.{name}: not a parameter group of domain {domain.name!r}; "
                                f"groups: {', '.join(groups) or 'none'}")
    optimizer = build_optimizer(config["optimizer"], list(model.parameters()) + list(weighting.parameters()),
                                groups)
    domain.check_optimizers([optimizer])
    domain.check_weighting(weighting)
    closure = build_closure(config, registry, domain, weighting)
    scheduler = build_scheduler(config["scheduler"], optimizer, train["epochs"])
    return Experiment(config, domain, model, weighting, engine, [optimizer], scheduler, device, closure)


def build_closure(config: dict, registry: Registry, domain: Domain, weighting: Weighting) -> ClosureMethod | None:
    """The config's closure method (None when ``closure`` is null), checked against the domain's
    update protocol, the weighting and the training settings: every refusal is one line, before
    a run directory exists."""
    section = config.get("closure")
    if section is None:
        return None
    comp = registry.get("closure", section["name"], where="closure.name")
    if config["train"]["accumulate"] != 1:
        raise UserError(f"train.accumulate: got {config['train']['accumulate']}; closure {comp.name!r} evaluates "
                        f"and steps on each batch by itself and cannot accumulate gradients (use 1)")
    method = comp.cls(seed=config["train"]["seed"], **_kwargs(section))
    domain.check_closure(method)
    method.check(domain, weighting)
    return method
