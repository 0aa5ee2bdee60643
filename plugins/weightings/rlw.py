"""Random loss weighting (Lin, Ye, Zhang, Tsang, TMLR 2022)."""
import torch

from mtl_platform.contracts import Weighting
from mtl_platform.errors import UserError
from mtl_platform.hookspecs import hookimpl
from mtl_platform.params import Param

DISTRIBUTIONS = ("normal", "uniform", "dirichlet", "bernoulli")


class RLW(Weighting):
    """Random loss weighting (Lin et al. TMLR 2022): fresh random task weights w = m·f(λ̃) at every step.

    Lin, Ye, Zhang, Tsang, "Reasonable Effectiveness of Random Weighting: A Litmus Test for
    Multi-Task Learning", TMLR 2022, §3 (the RLW objective Σ_t λ_t L_t with λ = f(λ̃),
    λ̃ ~ p(λ̃) drawn anew each iteration, f = softmax) and the distributions its experiments
    compare:

    - ``normal`` (default): λ̃ ~ N(0, I), λ = softmax(λ̃);
    - ``uniform``: λ̃ ~ U(0, 1)^m, λ = softmax(λ̃) (nearly equal weights);
    - ``dirichlet``: λ ~ Dir(1, …, 1) directly on the simplex (drawn as normalised Exp(1)
      variables; ``normalise`` does not apply);
    - ``bernoulli``: λ̃_t ~ Bernoulli(½) independently, λ = softmax(λ̃).

    Choices the paper leaves open, made explicit:

    - scaling: the paper's λ sums to 1; here w = m·λ, so Σ_t w_t = m and E[w_t] = 1 — the
      scale of equal weighting, so switching between EW and RLW keeps the learning rate
      meaningful. (With plain SGD the paper's λ corresponds to a learning rate m times
      smaller.)
    - ``normalise: sum`` uses λ = λ̃ / Σλ̃ instead of the softmax (for non-negative draws:
      ``uniform`` and ``bernoulli``). ``uniform`` + ``sum`` is the u/Σu form of CoNAL's
      retraining (spec thesis §3.5). A Bernoulli draw with no task selected (probability
      2^-m) is then read as "all tasks selected", i.e. w = 1.

    Draws use torch's global generator on the losses' device, so ``torch.manual_seed``
    reproduces them and checkpoints restore them. A loss weighting: every parameter gets
    ∇ Σ_t w_t L_t.
    """

    name = "rlw"
    scales_heads = True
    promises = ("nonnegative",)
    params = (
        Param("distribution", str, "normal", "distribution of the random weights",
              choices=DISTRIBUTIONS),
        Param("normalise", str, "softmax", "map from a draw to the simplex: softmax (the paper) or "
              "sum (λ̃/Σλ̃; uniform or bernoulli only)", choices=("softmax", "sum")),
    )

    def setup(self):
        if self.normalise == "sum" and self.distribution == "normal":
            raise UserError("weighting.normalise: 'sum' needs non-negative draws; "
                            "use distribution 'uniform' or 'bernoulli' (or normalise 'softmax')")

    def draw(self, like):
        """λ (m,) on the simplex, drawn from the global generator."""
        m, kw = self.num_tasks, {"device": like.device, "dtype": like.dtype}
        if self.distribution == "dirichlet":
            # Dir(1,…,1) = normalised i.i.d. Exp(1); 1 − U lies in (0, 1], so the log is finite
            e = -torch.log1p(-torch.rand(m, **kw))
            return e / e.sum().clamp_min(torch.finfo(like.dtype).tiny)
        if self.distribution == "normal":
            raw = torch.randn(m, **kw)
        elif self.distribution == "uniform":
            raw = torch.rand(m, **kw)
        else:
            raw = (torch.rand(m, **kw) < 0.5).to(like.dtype)
        if self.normalise == "softmax":
            return torch.softmax(raw, dim=0)
        total = raw.sum()
        empty = total <= 0
        raw = torch.where(empty, torch.ones_like(raw), raw)
        return raw / torch.where(empty, torch.full_like(total, m), total)

    def weights(self, losses, **computed):
        return self.num_tasks * self.draw(losses)


@hookimpl
def mtl_register(registry):
    registry.add_weighting(RLW)
