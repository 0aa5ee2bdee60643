"""Prompt Gradient Alignment (Phan, Tran, Tran, Le, NeurIPS 2024, arXiv 2406.09353; the update
rule rebuilt from the official code in spec gradients.md §3.3)."""
from __future__ import annotations

from mtl_platform.contracts import ClosureMethod
from mtl_platform.errors import UserError
from mtl_platform.hookspecs import hookimpl
from mtl_platform.params import Param

from ._alignment import aligned_step
from ._checks import require_plain_sum, target_index


class PGA(ClosureMethod):
    """Prompt Gradient Alignment: two objectives, gradient alignment on the shared block and a
    block-wise gradient-norm penalty, by finite differences at perturbed parameters.

    Phan et al., "Enhancing Domain Adaptation through Prompt Gradient Alignment", NeurIPS 2024.
    It minimises L_T + λL_S − ρ_ga cos(g_sh,S, g_sh,T) + ρ_gn(‖g_sh,T‖ + ‖g_T‖) +
    λρ_gn(‖g_sh,S‖ + ‖g_S‖) (spec §3.2) with the update of spec §3.3: target T evaluated at
    θ_sh + ρ_gn ĝ_sh,T − ρ_ga g_sh,S/(‖g_sh,S‖‖g_sh,T‖), θ_T + ρ_gn ĝ_T; source S at the mirror
    point; θ restored; ∇θ_sh ← g̃_sh,T + λ g̃_sh,S, ∇θ_T ← g̃_T, ∇θ_S ← g̃_S (λ on the shared part of
    the source gradient only, as the code does); +1e-12 in every denominator; BatchNorm
    statistics frozen in the perturbed passes. The shared block is ``model.shared_parameters()``,
    task i's block ``model.task_parameters(task_i)``. Exactly two loss terms; the weighting must
    be ew (PGA weights the gradients itself). Cost: four forward and four backward passes.
    Defaults: the released Office-Home source-combined run (spec §3.5: ρ_gn 3e-4, ρ_ga 1, λ 0.3).
    """

    name = "pga"
    params = (
        Param("radius", float, 3e-4, "ρ_gn, the gradient-norm penalty radius (SAM's ρ, per block)",
              bounds="[0, inf)"),
        Param("align", float, 1.0, "ρ_ga, the gradient-alignment strength on the shared block", bounds="[0, inf)"),
        Param("tradeoff", float, 0.3, "λ, the source's coefficient on the shared block (the target's is 1)",
              bounds="(0, inf)"),
        Param("target", str, None, "the target objective T (coefficient 1): a loss term of the domain "
              "(default: the first)", optional=True),
        Param("joint", bool, False, "normalise the norm-penalty perturbation over the shared and the task's own "
              "block together (one SAM norm) instead of block by block (spec §3.6 item 3)"),
    )

    def check(self, domain, weighting) -> None:
        tasks = domain.task_names
        if len(tasks) != 2:
            raise UserError(f"closure: pga takes exactly two objectives; domain {domain.name!r} has {len(tasks)} "
                            f"loss terms ({', '.join(tasks)}); use mpga for more")
        require_plain_sum("pga", weighting)
        self.index = target_index("pga", self.target, tasks)

    def step(self, closure, engine, optimizers):
        t = getattr(self, "index", None)
        if t is None:
            t = target_index("pga", self.target, list(engine.tasks))
        s = 1 - t
        coefficients = [0.0, 0.0]
        coefficients[t], coefficients[s] = 1.0, self.tradeoff
        neighbours = [[1], [0]]
        return aligned_step(closure, engine, optimizers, radius=self.radius, align=self.align,
                            coefficients=coefficients, neighbours=neighbours, joint=self.joint)


@hookimpl
def mtl_register(registry):
    registry.add_closure(PGA)
