"""The closure seam (DESIGN.md §3.5): update methods that re-evaluate the batch's losses at
perturbed parameters (SAM, PGA, MPGA) and step any base optimizer.

Two pieces:
- :class:`LossClosure`, what ``Domain.closure(batch, model)`` returns: a callable that
  re-evaluates ``{task: loss}`` at the *current* parameters with the same random draws as its
  first evaluation (it captures the torch RNG state when created and restores it before every
  call, so dropout masks and any in-forward augmentation repeat);
- :class:`ClosureMethod`, the registered component of kind ``closure`` (the config's
  ``closure`` section): ``check(domain, weighting)`` refuses a bad combination before a run
  directory exists, ``step(closure, engine, optimizers)`` does one update.
"""
from __future__ import annotations

from typing import Callable, Mapping, Sequence

import torch
from torch import Tensor

from .component import Configurable
from .step import StepOutput


class LossClosure:
    """``closure()`` → ``{task: loss}`` of one batch at the current parameters, every call with
    the random draws of the first.

    The torch RNG state is captured at construction: the CPU generator and, when ``device`` is
    a CUDA device, that device's generator. Each call restores both, then evaluates; after a
    call the generators stand where one evaluation leaves them, so a closure method consumes
    the random stream exactly as the ordinary step does (resumed runs stay bit for bit).

    ``params``: the gradient space the domain's own protocol passes to ``engine.backward``
    (None: the engine's default, the model's shared parameters); a closure method that combines
    task gradients through the engine passes it on.
    """

    def __init__(self, evaluate: Callable[[], Mapping[str, Tensor]], device: torch.device | str | None = None,
                 params: Sequence[Tensor] | None = None):
        self.evaluate = evaluate
        self.params = params
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.cpu_state = torch.get_rng_state()
        self.cuda_state = torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None

    def __call__(self) -> dict[str, Tensor]:
        torch.set_rng_state(self.cpu_state)
        if self.cuda_state is not None:
            torch.cuda.set_rng_state(self.cuda_state, self.device)
        return dict(self.evaluate())


class ClosureMethod(Configurable):
    """An update method built on loss closures (DESIGN.md §3.5); the config's ``closure``
    section names one (null: the ordinary update).

    Declared ``params`` are set as attributes by the constructor ``(seed=0, **params)``
    (typed and range-checked, ``Configurable.set_params``), then ``setup()`` runs.

    ``check(domain, weighting)`` refuses (``UserError``, one line) what the method cannot do:
    called when the experiment is built, before a run directory exists.

    ``step(closure, engine, optimizers)`` does one update on the batch behind ``closure`` (a
    :class:`LossClosure`): it evaluates the losses at θ, evaluates again at perturbed
    parameters (``mtl_platform.gradients.perturb``: snapshot and exact restore, BatchNorm
    statistics frozen), restores θ, leaves the final gradient in ``.grad`` and steps through
    ``engine.step(optimizers)`` (the AMP scaler and the zeroing stay the engine's). Where it
    combines task gradients by the configured weighting it calls ``engine.backward``, never a
    copy of it. It returns a :class:`StepOutput` with the detached losses at θ.
    """

    def __init__(self, seed: int = 0, **params):
        self.seed = int(seed)
        self.config = self.set_params(params, "closure")
        self.setup()

    def setup(self) -> None:
        """Settings derived from the declared parameters (already attributes)."""

    def check(self, domain, weighting) -> None:
        """Refuse (``UserError``) a domain or weighting this method cannot work with."""

    def step(self, closure: LossClosure, engine, optimizers) -> StepOutput:
        raise NotImplementedError
