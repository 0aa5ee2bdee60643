"""Agr-Rand, sign-agreement gradient surgery with random conflicting components (Mansilla et al., ICCV 2021)."""
import torch

from mtl_platform.contracts import Needs, Weighting
from mtl_platform.errors import UserError
from mtl_platform.hookspecs import hookimpl
from mtl_platform.params import SEED_BOUNDS, Param

from .agr_sum import ZERO_RULES, ZEROS_HELP, agreement


def conflict_scale(jacobian: torch.Tensor, agree: torch.Tensor) -> torch.Tensor:
    """σ (a 0-d tensor): the mean |Σ_k g_k[j]| over the agreeing coordinates j with a non-zero
    component; 0 when there are none. Masked sums, so no host synchronisation."""
    live = agree & (jacobian != 0).any(0)
    magnitude = torch.where(live, jacobian.sum(0).abs(), torch.zeros((), dtype=jacobian.dtype,
                                                                       device=jacobian.device))
    return magnitude.sum() / live.sum().clamp_min(1).to(jacobian.dtype)


class AgrRand(Weighting):
    """Agr-Rand (Mansilla et al. ICCV 2021): per coordinate, the sum of the task gradients where they agree in
    sign, else a random value.

    Mansilla, Echeveste, Milone, Ferrante, "Domain Generalization via Gradient Surgery",
    ICCV 2021 (arXiv:2108.01621), the Agr-Rand consensus strategy of its method section (its
    equation number not quoted: the paper's text was not available here, see ``agr_sum``): as
    Agr-Sum (``agr_sum``), but a conflicting coordinate is not zeroed; it gets a value drawn
    from a zero-mean normal distribution, so that its weight keeps moving instead of going dead. With the task gradients g_k (rows of
    the Jacobian), A the agreeing coordinates and per coordinate j:

        d[j] = Σ_k g_k[j]          for j ∈ A,
        d[j] = σ·ε_j, ε_j ~ N(0, 1) otherwise,   σ = mean_{j ∈ A'} |Σ_k g_k[j]|,

    where A' is A without its all-zero coordinates. The scale σ (the mean magnitude of the
    kept components) is the authors' code (lucasmansilla/DGvGS, ``src/gradient.py``,
    ``agreement_rand``); the summaries of the paper found here only say "random values sampled
    from a normal distribution". Choices made explicit:

    - ``zeros``: how a zero component counts (``agr_sum.agreement``); under ``conflict`` (the
      authors' code) an all-zero coordinate, e.g. a parameter no task uses, gets noise, under
      the default ``ignore`` it agrees and stays 0. A' drops all-zero coordinates, so under
      ``conflict`` σ is exactly the authors' scale and under ``ignore`` unused parameters do
      not dilute it.
    - no agreeing coordinate with a non-zero component: σ = 0 (the authors' code takes the
      mean of an empty set, NaN), so the update is Agr-Sum's.
    - the draws: P standard normals every call, whatever the agreement (only the conflicting
      ones are used), from the weighting's own ``torch.Generator``, created on the Jacobian's
      device at the first call and seeded with ``seed`` (null: ``torch.initial_seed()`` when the
      weighting is built, which in a run is ``train.seed``). Its state is in ``state_dict``
      (``_extra_state``), so the draws are a pure function of the seed and the calls
      so far (their P, dtype and device), unaffected by any other use of torch's global generator, and a resumed run
      continues bit for bit (with the generator on the device it was saved from).

    Needs the ``JACOBIAN`` and returns the aggregated gradient (P,). A gradient method:
    parameters outside the gradient space get ∇ Σ_t L_t. No promise: a random component may
    conflict with any task.
    """

    name = "agr_rand"
    needs = Needs.JACOBIAN
    scales_heads = False
    params = (
        Param("zeros", str, "ignore", ZEROS_HELP, choices=ZERO_RULES),
        Param("seed", int, None, "seed of the generator of the random components (null: torch's "
              "initial seed when built; in a run, train.seed)", optional=True, bounds=SEED_BOUNDS),
    )

    def setup(self):
        self.start_seed = torch.initial_seed() if self.seed is None else self.seed
        self.generator = None

    def draw_generator(self, device: torch.device) -> torch.Generator:
        """The weighting's generator, created (and seeded) on ``device`` at the first call."""
        if self.generator is None:
            self.generator = torch.Generator(device=device)
            self.generator.manual_seed(self.start_seed)
        return self.generator

    def weights(self, losses, jacobian=None, **computed):
        if jacobian is None:
            raise TypeError("agr_rand needs the Jacobian: call weights(losses, jacobian=J)")
        agree = agreement(jacobian, self.zeros)
        generator = self.draw_generator(jacobian.device)
        noise = torch.randn(jacobian.shape[1], generator=generator, dtype=jacobian.dtype,
                            device=generator.device).to(jacobian.device)
        return torch.where(agree, jacobian.sum(0), conflict_scale(jacobian, agree) * noise)

    def get_extra_state(self):
        """The seed and, once drawn from, the generator's device and state (tensors and plain
        values only: checkpoints load with ``weights_only=True``)."""
        started = self.generator is not None
        return {"seed": self.start_seed,
                "device": str(self.generator.device) if started else None,
                "state": self.generator.get_state() if started else None}

    def set_extra_state(self, state):
        self.start_seed = int(state["seed"])
        self.generator = None
        if state["state"] is None:
            return
        device = torch.device(state["device"])
        if device.type != "cpu" and not getattr(torch, device.type).is_available():
            raise UserError(f"weighting agr_rand: the checkpoint's generator is on {device}, which this "
                            f"machine lacks; resume on a {device.type} device")
        self.generator = torch.Generator(device=device)
        self.generator.set_state(state["state"])


@hookimpl
def mtl_register(registry):
    registry.add_weighting(AgrRand)
