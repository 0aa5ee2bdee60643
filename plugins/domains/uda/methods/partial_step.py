"""One optimiser step of a multi-step UDA protocol (MCD, DWL) that moves only some parameters."""
from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn

from mtl_platform.errors import UserError


def partial_step(model: nn.Module, optimizers, loss: Tensor | dict[str, Tensor], keep: Iterable[nn.Parameter],
                 engine=None, params: list[nn.Parameter] | None = None,
                 plain: Iterable[nn.Parameter] = ()) -> Tensor | None:
    """Back-propagate ``loss`` — a tensor, or a dict of task losses combined by the run's
    weighting through ``engine`` over ``params`` — drop every gradient outside ``keep`` and step
    all optimisers (parameters without a gradient do not move; SGD's momentum buffers of the
    others are left as they are). Parameters in ``plain`` instead take a plain SGD step,
    p ← p − lr·(∇p + wd·p) with their group's current lr and weight decay and no momentum (as
    tllib's MCD steps its generator with a momentum-free SGD). Gradients are cleared before
    and after. Returns the engine's answer (None for a plain loss)."""
    for opt in optimizers:
        opt.zero_grad(set_to_none=True)
    answer = None
    if isinstance(loss, dict):
        answer = engine.backward(loss, params=params)
    else:
        loss.backward()
    keep_ids = {id(p) for p in keep}
    for p in model.parameters():
        if id(p) not in keep_ids:
            p.grad = None
    plain_step(optimizers, [p for p in plain if id(p) in keep_ids])
    for opt in optimizers:
        opt.step()
    for opt in optimizers:
        opt.zero_grad(set_to_none=True)
    return answer


def check_plain_sgd(optimizers) -> None:
    """Plain SGD steps read each group's lr and weight decay the way ``torch.optim.SGD`` keeps them."""
    if not all(isinstance(opt, torch.optim.SGD) for opt in optimizers):
        raise UserError("domain.method.generator_momentum: false needs optimizer.name: sgd (plain SGD steps of G)")


@torch.no_grad()
def plain_step(optimizers, params: list[nn.Parameter]) -> None:
    """A momentum-free SGD step of ``params`` (their gradients are then dropped, so the
    optimisers leave them alone)."""
    if not params:
        return
    check_plain_sgd(optimizers)
    group_of = {id(p): g for opt in optimizers for g in opt.param_groups for p in g["params"]}
    for p in params:
        group = group_of[id(p)]
        if p.grad is not None:
            p.add_(p.grad + group["weight_decay"] * p, alpha=-group["lr"])
            p.grad = None
