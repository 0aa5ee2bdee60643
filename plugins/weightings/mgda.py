"""Multiple-gradient descent (Désidéri 2012; Sener & Koltun, NeurIPS 2018, Alg. 2 / Eq. 3)."""
import torch

from mtl_platform.contracts import Needs, Weighting
from mtl_platform.hookspecs import hookimpl
from mtl_platform.params import Param

from ._solvers import min_norm_frank_wolfe, min_norm_simplex, scale_of, simplex_kkt_gap, working_gram

NORMALIZATIONS = ("none", "l2", "loss", "loss+")


class MGDA(Weighting):
    """MGDA (Désidéri 2012; Sener & Koltun NeurIPS 2018): the update is the minimum-norm point of the convex
    hull of the task gradients.

    Désidéri, "Multiple-gradient descent algorithm (MGDA) for multiobjective optimization",
    C. R. Math. 2012; Sener & Koltun, "Multi-Task Learning as Multi-Objective Optimization",
    NeurIPS 2018: ``min_{w ∈ Δ} ‖Σ_t w_t g_t‖²`` (Eq. 3), solved from the Gramian alone.
    The answer d satisfies ``g_iᵀd ≥ ‖d‖²`` for every task (a common descent direction, or
    d = 0 at a Pareto-stationary point).

    Choices the paper leaves open, as parameters:

    - ``normalization`` (Sener & Koltun's code, ``gradient_normalizers``; off in the paper):
      each g_t is divided by n_t before solving — ``none``: 1; ``l2``: ‖g_t‖ (= √G_tt);
      ``loss``: L_t; ``loss+``: L_t·‖g_t‖. Losses and norms are floored at ``eps``, so the loss
      normalisations assume positive losses.
    - ``weights_on``: with a normalisation the solver returns simplex weights s for the
      *normalised* gradients. ``normalized`` (default; LibMTL's param mode) applies them to
      the normalised gradients, so the update is the min-norm point of conv{g_t/n_t} and keeps
      MGDA's descent guarantee: the returned weights are ``s_t/n_t``. ``raw`` applies s to the
      raw gradients (Sener & Koltun's released code weights the raw losses by s). With
      ``normalization: none`` both are the same.
    - ``solver``: ``active_set`` (default) — Wolfe's exact minimum-norm-point method
      (``_solvers.min_norm_simplex``), exact after at most about 1.75m
      steps (closed form for m = 2), stopping as soon as it has converged (read on the host
      every few steps); ``frank_wolfe`` — Sener & Koltun's Frank–Wolfe with exact
      line search (pairwise form), cheaper per step but only approximate on ill-conditioned
      Gramians. ``iterations`` is the step budget (null: 2m + 6 for ``active_set``, 250 for
      ``frank_wolfe``); ``tol`` the relative Frank–Wolfe-gap tolerance at which a solve is
      frozen (tested on the device). Every step is in float64 (float32 on MPS).
    - ``ub``: MGDA-UB (Sener & Koltun §3.3): the same solve on the gradients w.r.t. the shared
      representation instead of the shared parameters — sets ``mode = "rep"`` so the engine
      computes the Gramian there (it falls back to param mode, and says so, where the
      architecture has no single representation).

    Returns task weights (m,) with ``wᵀJ`` the update; identical gradients g give equal
    weights 1/m, so d = g (with ``normalization: none``; ``l2`` gives d = g/‖g‖); m = 1 gives
    w = 1/n_1 (1 without normalisation). A gradient method (DESIGN.md §3.2): the heads get the
    unweighted ∇Σ L_t. The Frank–Wolfe gap of the last solve relative to the mean ‖g_t/n_t‖²
    (0 at the optimum) is kept in the non-persistent buffer ``solver_gap``.

    Partial labels: a task absent from the batch (zero gradient) would put 0 in the hull and
    make the update 0; it is replaced by the mean of the present tasks' gradients, which lies
    in their hull, so the update is the minimum-norm point of the present tasks' hull
    (``absent_tasks = "substitute"``, ``contracts.absent``).
    """

    name = "mgda"
    needs = Needs.GRAMIAN
    scales_heads = False
    absent_tasks = "substitute"
    promises = ("nonnegative", "no_conflict", "min_norm")  # per instance: see setup
    params = (
        Param("normalization", str, "none", "scale each g_t before solving", choices=NORMALIZATIONS),
        Param("weights_on", str, "normalized", "apply the solution to the normalised or the raw gradients",
              choices=("normalized", "raw")),
        Param("solver", str, "active_set", "min-norm solver", choices=("active_set", "frank_wolfe")),
        Param("iterations", int, None, "solver step budget (null: 2m+6 active_set, 250 frank_wolfe)",
              optional=True, bounds="[1, inf)"),
        Param("tol", float, 1e-12, "relative Frank–Wolfe gap at which a solve stops", bounds="[0, inf)"),
        Param("eps", float, 1e-12, "floor of the normalisers (losses, norms)", bounds="[0, inf)"),
        Param("ub", bool, False, "MGDA-UB: gradients w.r.t. the shared representation (rep mode)"),
    )

    def setup(self):
        if self.normalization != "none":  # the min-norm point of the *normalised* gradients
            self.promises = ("nonnegative", "no_conflict") if self.weights_on == "normalized" else ("nonnegative",)
        if self.ub:
            self.mode = "rep"
        self.register_buffer("solver_gap", torch.zeros(()), persistent=False)

    def normalizers(self, losses, gram):
        """n_t (m,) of the chosen ``normalization``."""
        norms = torch.diagonal(gram).clamp_min(0).sqrt()
        loss = losses.to(gram).clamp_min(self.eps)
        if self.normalization == "l2":
            return norms.clamp_min(self.eps)
        if self.normalization == "loss":
            return loss
        if self.normalization == "loss+":
            return (loss * norms).clamp_min(self.eps)
        return torch.ones_like(norms)

    def weights(self, losses, gram=None, **computed):
        if gram is None:
            raise TypeError("mgda needs the Gramian: call weights(losses, gram=G)")
        out_dtype = gram.dtype
        g = working_gram(gram)
        n = self.normalizers(losses, g)
        scaled = g / (n[:, None] * n[None, :])
        if self.solver == "frank_wolfe":
            s = min_norm_frank_wolfe(scaled, 250 if self.iterations is None else self.iterations, self.tol)
        else:
            s = min_norm_simplex(scaled, self.iterations, self.tol)
        with torch.no_grad():
            scale = scale_of(scaled)
            self.solver_gap = (simplex_kkt_gap(scaled, s) / scale).to(self.solver_gap)
        w = s / n if self.weights_on == "normalized" else s
        return w.to(out_dtype)


@hookimpl
def mtl_register(registry):
    registry.add_weighting(MGDA)
