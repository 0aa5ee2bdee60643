"""Equal weighting: the plain sum of task losses, the usual multi-task baseline."""
from mtl_platform.contracts import Weighting
from mtl_platform.hookspecs import hookimpl


class EW(Weighting):
    """Equal weights: w_t = 1, i.e. minimise Σ_t L_t (no paper: the usual multi-task baseline)."""

    name = "ew"
    promises = ("nonnegative",)

    def weights(self, losses, **computed):
        return self.equal(losses)


@hookimpl
def mtl_register(registry):
    registry.add_weighting(EW)
    # A config that names no weighting gets equal weighting, and so do the STL baselines
    # (one task: the plain loss). Declared here, as data, so the core names no weighting.
    registry.set_default("weighting", "ew")
    registry.set_default("baselines.stl_weighting", "ew")
