"""Query-image perturbations of the retrieval domain (sub-kind ``retrieval.perturbation``;
spec gradients.md §1.12, issue 22).

Images are in [0, 1]. ``loss_of(x)`` is the retrieval loss of the batch with query images ``x``
(the current model, everything else fixed); an attack ascends it. Attacks differentiate with
``torch.autograd.grad`` with respect to the input only, so no parameter's ``.grad`` is touched,
and they work inside ``torch.no_grad`` (a re-evaluation closure) by enabling gradients locally.

- ``gaussian``: clip(x + σ·N(0, I), 0, 1), the "adversarial" image of the GH paper's released
  AT-TIRG training loop (σ = 0.3; spec §1.12);
- ``fgsm``: clip(x + ε·sign(∇ₓL), 0, 1) (Goodfellow et al., ICLR 2015, Eq. 3);
- ``pgd``: k steps of x ← Π(x + α·sign(∇ₓL)), Π the projection onto the L∞ ε-ball around the
  clean image intersected with [0, 1] (Madry et al., ICLR 2018, Eq. 2), optionally from a uniform
  random start in the ball. Default α = 2.5·ε/k (Madry et al. §C).
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from mtl_platform.contracts import Configurable
from mtl_platform.errors import UserError
from mtl_platform.params import Param, did_you_mean, resolve_params

LossOf = Callable[[Tensor], Tensor]


class Perturbation(Configurable):
    """One way to perturb a batch of query images; ``needs_gradient``: whether it calls ``loss_of``."""

    needs_gradient = True

    def __init__(self, seed: int = 0, **params):
        self.seed = int(seed)
        self.check_ranges(params, "domain.perturbation")
        self.values = self.set_params(params, "domain.perturbation")

    def __call__(self, images: Tensor, loss_of: LossOf) -> Tensor:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError


def input_gradient(images: Tensor, loss_of: LossOf) -> Tensor:
    """∇ₓ loss_of(x) at ``images``, by ``torch.autograd.grad`` on the input alone (no ``.grad`` is
    written anywhere), with gradients enabled even inside ``torch.no_grad``."""
    with torch.enable_grad():
        x = images.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(loss_of(x), x)
    return grad


class Gaussian(Perturbation):
    """clip(x + σ·N(0, I), 0, 1): the released AT-TIRG training perturbation (no gradient)."""

    name = "gaussian"
    needs_gradient = False
    params = (Param("sigma", float, 0.3, "noise standard deviation (images in [0, 1])", bounds="(0, 10]"),)

    def __call__(self, images, loss_of=None):
        return (images.detach() + self.sigma * torch.randn_like(images)).clamp_(0, 1)

    def describe(self):
        return f"gaussian σ={self.sigma:g}"


class FGSM(Perturbation):
    """clip(x + ε·sign(∇ₓL), 0, 1) (Goodfellow et al., ICLR 2015)."""

    name = "fgsm"
    params = (Param("eps", float, 8 / 255, "L∞ radius ε (images in [0, 1])", bounds="(0, 1]"),)

    def __call__(self, images, loss_of):
        return (images.detach() + self.eps * input_gradient(images, loss_of).sign()).clamp_(0, 1)

    def describe(self):
        return f"fgsm ε={self.eps:.4g}"


class PGD(Perturbation):
    """``steps`` signed-gradient ascent steps of size ``step_size``, each projected onto the L∞
    ε-ball around the clean image and onto [0, 1] (Madry et al., ICLR 2018)."""

    name = "pgd"
    params = (
        Param("eps", float, 8 / 255, "L∞ radius ε (images in [0, 1])", bounds="(0, 1]"),
        Param("steps", int, 5, "ascent steps k", bounds="[1, 1000]"),
        Param("step_size", float, None, "step α (null: 2.5·ε/steps)", optional=True, bounds="(0, 1]"),
        Param("random_start", bool, True, "start from a uniform point of the ε-ball"),
    )

    @property
    def alpha(self) -> float:
        return self.step_size if self.step_size is not None else 2.5 * self.eps / self.steps

    def __call__(self, images, loss_of):
        clean = images.detach()
        low, high = (clean - self.eps).clamp(min=0), (clean + self.eps).clamp(max=1)
        x = clean
        if self.random_start:
            x = (clean + (2 * torch.rand_like(clean) - 1) * self.eps).clamp(0, 1)
        for _ in range(self.steps):
            x = x + self.alpha * input_gradient(x, loss_of).sign()
            x = torch.minimum(torch.maximum(x, low), high)
        return x.detach()

    def describe(self):
        return f"pgd-{self.steps} ε={self.eps:.4g}"


#: the built-in perturbations by name (also registered as ``retrieval.perturbation``)
PERTURBATIONS: dict[str, type[Perturbation]] = {c.name: c for c in (Gaussian, FGSM, PGD)}


def build_perturbation(given, where: str, table: dict | None = None) -> Perturbation:
    """A perturbation from a config value (a name or ``{name: ..., <params>}``), validated like
    a sub-kind: an unknown name or key, a value out of range, is one ``UserError`` at ``where``."""
    table = PERTURBATIONS if table is None else table
    if isinstance(given, Perturbation):
        return given
    if isinstance(given, str):
        given = {"name": given}
    if not isinstance(given, dict) or not isinstance(given.get("name"), str):
        raise UserError(f"{where}: got {given!r}, expected an attack name or a mapping with 'name' "
                        f"({', '.join(table)})")
    name = given["name"]
    if name not in table:
        raise UserError(f"{where}.name: unknown attack {name!r}{did_you_mean(name, table)}; "
                        f"allowed: {', '.join(table)}")
    cls = table[name]
    values = resolve_params(cls.params, given, where)
    values.pop("name", None)
    out = cls.__new__(cls)
    out.seed = 0
    out.values = out.set_params(values, where)
    return out
