"""Load ImageNet (or any torchvision-keyed) weights into a backbone, with one-line errors.

The thesis' encoders are ImageNet-1k pretrained (spec thesis §1.2). ``spec`` is a local file
(a ``state_dict`` saved with ``torch.save``) or a torchvision weights name, resolved with
``torchvision.models.get_weight`` and fetched through torch.hub's cache (which needs the
internet the first time).
"""
from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import nn

from mtl_platform.errors import UserError

_NAME = re.compile(r"^(?:[A-Za-z0-9_]+_Weights\.)?[A-Z][A-Z0-9_]*$")
_STAGE_PREFIX = re.compile(r"^stages\.\d+\.")
_BN_COUNTER = "num_batches_tracked"
_REMEDY = "download it once with internet, or give a local file path, or set pretrained: null"


def _few(keys) -> str:
    keys = sorted(keys)
    return ", ".join(keys[:4]) + (f", … ({len(keys)} in all)" if len(keys) > 4 else "")


def _targets(module: nn.Module) -> dict[str, torch.Tensor]:
    """The module's state, by the names weights files use: a staged encoder whose stages hold
    torchvision names (``stages.1.layer1.0.conv1.weight``) is addressed without ``stages.<i>.``."""
    state = module.state_dict()
    stripped = {_STAGE_PREFIX.sub("", k): v for k, v in state.items()}
    return stripped if len(stripped) == len(state) else dict(state)


def _resolve_weights(spec: str, where: str, arch: str | None):
    from torchvision.models import get_model_weights, get_weight

    try:
        if "." in spec:
            return get_weight(spec)
        if arch is None:
            raise UserError(f"{where}: {spec!r} names weights without a model; "
                            f"write it in full, e.g. 'ResNet50_Weights.{spec}'")
        return get_model_weights(arch)[spec]
    except (ValueError, KeyError):
        choices = ""
        if arch is not None:
            choices = " (" + ", ".join(w.name for w in get_model_weights(arch)) + " for " + arch + ")"
        raise UserError(f"{where}: unknown torchvision weights {spec!r}{choices}; "
                        f"give a weights name or a local file path") from None


def _fetch(weights, spec: str, where: str) -> dict:
    """The weights' state_dict from torch.hub's cache, downloading it when absent."""
    try:
        return weights.get_state_dict(progress=False, check_hash=True, map_location="cpu",
                                      weights_only=True)
    except Exception as exc:  # URLError, OSError, hash mismatch, unpickling: all one remedy
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"{where}: could not fetch weights {spec!r} ({reason}); {_REMEDY}") from None


def _read_file(path: Path, where: str) -> dict:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"{where}: cannot read weights file {str(path)!r} ({reason})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"{where}: {str(path)!r} is not a state_dict (a dict of tensors, "
                        f"possibly under 'state_dict')")
    return state


def load_pretrained(module: nn.Module, spec: str, where: str, arch: str | None = None) -> nn.Module:
    """Copy the weights named by ``spec`` into ``module`` in place and return it.

    ``spec``: a path to a local ``torch.save``'d state_dict (a ``{'state_dict': ...}`` wrapper
    and ``module.`` prefixes are accepted), or a torchvision weights name
    (``ResNet50_Weights.IMAGENET1K_V1``; a bare ``IMAGENET1K_V1``/``DEFAULT`` needs ``arch``,
    e.g. ``'resnet50'``). ``fc.*`` entries (the ImageNet classifier) are ignored; every other
    key must match the module's in name and shape (BatchNorm's ``num_batches_tracked`` may be
    absent). Mistakes raise :class:`UserError` naming ``where`` (the config setting).
    """
    spec = str(spec)
    path = Path(spec).expanduser()
    if path.is_file():
        state = _read_file(path, where)
    elif _NAME.match(spec):
        state = _fetch(_resolve_weights(spec, where, arch), spec, where)
    else:
        raise UserError(f"{where}: no weights file {spec!r} (nor is it a torchvision weights name "
                        f"such as 'IMAGENET1K_V1')")
    state = {(k[len("module."):] if k.startswith("module.") else k): v for k, v in state.items()}
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    targets = _targets(module)
    missing = {k for k in targets if k not in state and not k.endswith(_BN_COUNTER)}
    unexpected = set(state) - set(targets)
    if missing or unexpected:
        parts = ([f"missing {_few(missing)}"] if missing else []) + \
                ([f"unexpected {_few(unexpected)}"] if unexpected else [])
        raise UserError(f"{where}: weights {spec!r} do not fit the model: {'; '.join(parts)}")
    wrong = {k: (tuple(state[k].shape), tuple(targets[k].shape)) for k in state
             if state[k].shape != targets[k].shape}
    if wrong:
        k, (got, want) = next(iter(sorted(wrong.items())))
        raise UserError(f"{where}: weights {spec!r} have the wrong shapes for {len(wrong)} tensors, "
                        f"e.g. {k} {got} vs the model's {want} (ImageNet weights fit only the width-64 network)")
    with torch.no_grad():
        for k, v in state.items():
            targets[k].copy_(v)
    return module
