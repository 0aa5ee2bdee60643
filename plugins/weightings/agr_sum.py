"""Agr-Sum, sign-agreement gradient surgery (Mansilla, Echeveste, Milone, Ferrante, ICCV 2021)."""
import torch

from mtl_platform.contracts import Needs, Weighting
from mtl_platform.hookspecs import hookimpl
from mtl_platform.params import Param

#: how a zero component counts when judging sign agreement (see :func:`agreement`)
ZERO_RULES = ("ignore", "conflict")

ZEROS_HELP = ("how a zero gradient component counts: ignore (a coordinate agrees when its non-zero "
              "components share a sign) or conflict (every component must be non-zero and of one "
              "sign: the authors' code)")


def agreement(jacobian: torch.Tensor, zeros: str = "ignore") -> torch.Tensor:
    """Mask (P,): True at the coordinates j where the task gradients g_k[j] agree in sign.

    ``zeros="ignore"``: a zero has no sign, so j agrees when no two of its non-zero components
    have opposite signs (an all-zero coordinate agrees, vacuously). ``zeros="conflict"``: j agrees
    only when every g_k[j] is strictly positive or every one strictly negative, the test
    |Σ_k sign(g_k[j])| = K of the authors' code (lucasmansilla/DGvGS, ``agreement_mask``), under
    which a single zero makes the coordinate conflicting.
    """
    if zeros == "conflict":
        return (jacobian > 0).all(0) | (jacobian < 0).all(0)
    return ~((jacobian > 0).any(0) & (jacobian < 0).any(0))


class AgrSum(Weighting):
    """Agr-Sum (Mansilla et al. ICCV 2021): per coordinate, the sum of the task gradients where they agree in
    sign, else 0.

    Mansilla, Echeveste, Milone, Ferrante, "Domain Generalization via Gradient Surgery",
    ICCV 2021, the Agr-Sum consensus strategy of its method section (arXiv:2108.01621). The
    paper's text was not available here, so neither its section nor its equation number is
    quoted; the rule below is the one of the authors' code (lucasmansilla/DGvGS,
    ``src/gradient.py``, ``agreement_sum``), which was read. With the per-domain (here per-task)
    gradients g_1..g_K of the shared parameters (the rows of the Jacobian) and per coordinate j:

        d[j] = Σ_k g_k[j]   if the g_k[j] agree in sign,
        d[j] = 0            otherwise.

    How zeros count is the ``zeros`` parameter (:func:`agreement`): by default (``ignore``) a
    zero component neither agrees nor disagrees, so a coordinate where one task's gradient is 0
    and the others share a sign keeps their sum; ``conflict`` is the authors' code, where it is
    zeroed. Either way every kept coordinate has g_k[j]·d[j] ≥ 0 for every k, so g_kᵀd ≥ 0:
    the update conflicts with no task (``promises = ("no_conflict",)``). Identical task
    gradients give K times the common gradient.

    The paper splits mini-batches by source domain; here it applies to the tasks the domain
    gives the weighting, in whatever gradient space the engine serves (``param`` mode: each
    shared parameter coordinate is one j). Needs the ``JACOBIAN`` and returns the aggregated
    gradient (P,). A gradient method: parameters outside the gradient space get ∇ Σ_t L_t.
    """

    name = "agr_sum"
    needs = Needs.JACOBIAN
    scales_heads = False
    promises = ("no_conflict",)
    params = (Param("zeros", str, "ignore", ZEROS_HELP, choices=ZERO_RULES),)

    def weights(self, losses, jacobian=None, **computed):
        if jacobian is None:
            raise TypeError("agr_sum needs the Jacobian: call weights(losses, jacobian=J)")
        total = jacobian.sum(0)
        return torch.where(agreement(jacobian, self.zeros), total, torch.zeros_like(total))


@hookimpl
def mtl_register(registry):
    registry.add_weighting(AgrSum)
