"""One optimiser step of a multi-step UDA protocol (MCD, DWL) that moves only some parameters."""
from __future__ import annotations

from collections.abc import Iterable

from torch import Tensor, nn


def partial_step(model: nn.Module, optimizers, loss: Tensor | dict[str, Tensor], keep: Iterable[nn.Parameter],
                 engine=None, params: list[nn.Parameter] | None = None) -> None:
    """Back-propagate ``loss`` — a tensor, or a dict of task losses combined by the run's
    weighting through ``engine`` over ``params`` — drop every gradient outside ``keep`` and step
    all optimisers (parameters without a gradient do not move; SGD's momentum buffers of the
    others are left as they are). Gradients are cleared before and after."""
    for opt in optimizers:
        opt.zero_grad(set_to_none=True)
    if isinstance(loss, dict):
        engine.backward(loss, params=params)
    else:
        loss.backward()
    keep_ids = {id(p) for p in keep}
    for p in model.parameters():
        if id(p) not in keep_ids:
            p.grad = None
    for opt in optimizers:
        opt.step()
    for opt in optimizers:
        opt.zero_grad(set_to_none=True)
