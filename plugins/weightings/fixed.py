"""Fixed task weights: minimise Σ_t w_t L_t with w given (static trade-offs, or the task weights
an architecture search learned, e.g. DSMTL-AL's retraining, Yue PhD thesis 2023, Eq. 6.10)."""
import torch

from mtl_platform.contracts import Weighting
from mtl_platform.errors import UserError
from mtl_platform.hookspecs import hookimpl
from mtl_platform.params import Param


class Fixed(Weighting):
    """Fixed weights (no paper: a static trade-off, or the weights a search learned): w_t from ``weights``
    (task → weight), constant through training.

    A loss weighting (every parameter gets ∇ Σ_t w_t L_t). Weights are used as given (not
    renormalised): DSMTL-AL's learned weights lie on the simplex, as in the thesis's Eq. 6.10.
    Left out (``null``) after an architecture search, the retraining stage fills in the task
    weights the search learned; elsewhere they are required.
    """

    name = "fixed"
    promises = ("nonnegative",)
    params = (Param("weights", dict, None, "task → weight (null: the task weights an architecture "
                    "search learned)", optional=True, item=float, bounds="[0, inf)"),)

    def setup(self):
        weights = self.config["weights"]  # not an attribute: it would hide the method weights()
        if weights is None:
            raise UserError("weighting.weights: required, a mapping task → weight (only a searched architecture "
                            "that learns task weights, such as dsmtl_al, fills it in)")
        unknown = sorted(set(weights) - set(self.tasks))
        missing = [t for t in self.tasks if t not in weights]
        if unknown or missing:
            raise UserError(f"weighting.weights: expected one weight per task ({', '.join(self.tasks)}); "
                            + (f"unknown {unknown}" if unknown else f"missing {missing}"))
        values = [float(weights[t]) for t in self.tasks]  # each a finite float >= 0: the declared bounds
        self.register_buffer("fixed", torch.tensor(values))

    def weights(self, losses, **computed):
        return self.fixed.to(device=losses.device, dtype=losses.dtype)


@hookimpl
def mtl_register(registry):
    registry.add_weighting(Fixed)
