"""CoNAL-Pro, CoNAL's progressive architecture search (Yue, PhD thesis 2023, Ch. 5, §5.2.4;
spec thesis.md §4 and §9 items 16–17), as a run of search rounds, an assembly and a retraining."""
from __future__ import annotations

import copy
import json
from dataclasses import replace

import torch
from torch import nn

from mtl_platform.atomic import atomic_write_text
from mtl_platform.checkpoint import load
from mtl_platform.contracts import Architecture
from mtl_platform.contracts.stage import Stage, StageContext
from mtl_platform.errors import UserError
from mtl_platform.experiment import build_architecture
from mtl_platform.hookspecs import hookimpl
from mtl_platform.params import Param
from mtl_platform.stages import BilevelSearch, TrainStage, from_derived
from mtl_platform.stages.bilevel import search_section
from mtl_platform.stages.symmetric_start import SYMMETRIC_INIT, copy_weights
from mtl_platform.stages import margins
from mtl_platform.stages.derive import ARCHITECTURE_FILE, describe, min_margin


class ConalPro(Architecture):
    """CoNAL-Pro: CoNAL's search run progressively, one branch point per round, from the deepest towards the input.

    The thesis describes the procedure only in prose (§5.2.4, spec §4 [RECON], §9.17); this
    is the reading implemented here. With P branch points (P−1 encoder stages, branch point p
    before stage p, P = fully shared), round k = 1 … P−1 decides, for each *active* task (one
    not assigned in rounds 1 … k−1), between two branch points:

    (a) P−k+1: join **subgroup k** — share stages 1 … P−k with the tasks of earlier subgroups
        (the trunk) and stages P−k+1 … P−1 with the other tasks of subgroup k (the thesis's
        subgroup-shared modules h_S; in round 1 there are none: subgroup 1 shares the whole
        encoder, f_S^{P−1} included);
    (b) P−k: go purely specific from stage P−k on, and stay active for round k+1. In the
        last round (k = P−1) this is branch point 1, a separate network.

    **A round's supernet** (this model with ``round: k``) holds only the active tasks, built
    from fresh weights: one shared encoder f (all P−1 stages, trained by every active task),
    for each active task t its purely-specific stages h_t^{P−k} … h_t^{P−1} (only those: the
    thesis's memory saving over CoNAL's m+1 full encoders) and its head g_t, and α_t ∈ R²
    (zeros at start, plain softmax π_t = softmax(α_t), no temperature, as CoNAL). With
    z = f^{P−k−1} ∘ … ∘ f^1(x) the trunk's output (z = x in the last round),

        o_t = π_t^(b) · h_t^{P−1} ∘ … ∘ h_t^{P−k}(z) + π_t^(a) · f^{P−1} ∘ … ∘ f^{P−k}(z),   ŷ_t = g_t(o_t).

    Path (a) shares everything among the active tasks: within the round, the tasks that
    choose it are exactly subgroup k, whose shared stages P−k+1 … P−1 are the fresh copies
    h_S the thesis adds ("another shared module h_S^{P−1} … shared by all the tasks in the
    current search space"), after the trunk up to f^{P−k}. Tasks assigned earlier take no
    part: their losses are not computed, they have no α, and no module of the round is
    trained by them [RECON: the thesis removes them "from later stages"; nothing carries
    over between rounds except the assignments].

    **Conflict noticing** acts only on the round's *module in question*: the shared stages
    f^{P−k} … f^{P−1} that path (a) uses and path (b) does not, one parameter block (the
    last of ``parameter_blocks()``; in round 1 exactly f_S^{P−1}, "conflict noticing is
    computed only for the last shared module"). If two active tasks' gradients on that block
    have negative cosine, the block gets zero gradient (Eq. 5.2–5.3 with a single module,
    the ``conal_pro_conflict`` weighting); the trunk stages f^1 … f^{P−k−1} always get
    Σ_t ∇L_t, as CoNAL's modules before the first conflict [RECON: the round is a CoNAL
    search with two branch points, i.e. one module; for k ≥ 2 the thesis names only
    h_S^{P−1}, and reading the whole (a)-only part as the module keeps Eq. 5.3's "current
    and successive" modules together].

    Each round is a first-order bi-level search (Algorithm 3: α on a D_val batch, then θ
    on a D_tr batch, 50/50 split), ``search.epochs`` epochs per round (``search.budget:
    total`` splits ``search.epochs`` equally over the P−1 rounds instead; the thesis gives
    only the whole 10-epoch CelebA budget, spec §4 [ASSUME]). The round's decision is
    argmax α_t of its last epoch (ties, e.g. an α never stepped, go to (b)). A round with one
    active task still searches (no conflict can arise; α weighs the two paths' fit alone).
    A round with no active task is finished at once, so the run is always the fixed stage
    list ``round1 … round{P−1}, derive, retrain`` that resume checks (P is read from the
    configured domain's encoder when the plan is made). Round k's folder holds its plain
    config — ``architecture.round: k`` and ``domain.tasks``: the active tasks, which is how
    the round sees the domain (its losses, evaluation and the engine's loss terms) — so
    the round's supernet rebuilds from that JSON; ``--resume`` skips finished rounds (their
    decisions are read back from their results) and continues the running one.

    **Assembly** (stage ``derive``): each task's branch point is its subgroup's P−k+1, or 1
    for a task that chose (b) in the last round; the derived architecture is a ``tree``
    whose ``groups`` give, at stage q, one trunk group (the tasks with branch point > q),
    one group per subgroup that has left the trunk (its shared h_S copy of stage q) and a
    singleton per separate network. ``branch_points`` (1-based; the thesis's Table 5.14
    prints them 0-based, spec §9.16) and ``subgroups`` go to the report. **Retraining**
    (stage ``retrain``): that tree from fresh weights on the full training set with the
    configured weighting, by default the thesis's random loss weights u/Σu (as CoNAL).
    """

    name = "conal_pro"
    has_rep = False
    default_weighting = {"name": "rlw", "distribution": "uniform", "normalise": "sum"}
    params = (
        search_section(
            Param("conflict_notice", bool, True, "zero the round's module's gradient when two active tasks "
                  "conflict on it (Eq. 5.2-5.3 on one module)"),
            Param("budget", str, "round", "'round': every round runs search.epochs; 'total': search.epochs "
                  "is split equally over the P-1 rounds (at least 1 each)", choices=("round", "total")),
            SYMMETRIC_INIT,
            help="CoNAL-Pro's search rounds (thesis §5.2.4); epochs, batch size and learning rates of each round"),
        Param("round", int, 1, "the search round this supernet is (1: the deepest branch point); set by the "
              "run's stages", bounds="[1, inf)"),
    )

    def __init__(self, tasks, encoder_factory, head_factory, round=1, **params):
        super().__init__(tasks, encoder_factory, head_factory, round=round, **params)
        self.shared = encoder_factory()
        stages = len(self.shared.stages)
        self.points = stages + 1  # P
        if not 1 <= round <= stages:
            raise UserError(f"architecture.round: got {round}, expected 1..{stages} (P−1 rounds for an encoder "
                            f"of {stages} stages)")
        self.round = round
        self.first = stages - round  # 0-based index of stage P−k, where path (b) leaves f
        self.private = nn.ModuleDict({t: nn.ModuleList(list(encoder_factory().stages)[self.first:])
                                      for t in self.tasks})
        self.heads = nn.ModuleDict({t: head_factory(t) for t in self.tasks})
        self.alpha = nn.ParameterDict({t: nn.Parameter(torch.zeros(2)) for t in self.tasks})  # [(b), (a)]
        if (params.get("search") or {}).get("symmetric_init", True):
            copy_weights(self.shared.stages[self.first:], self.private.values())
            copy_weights(self.heads[self.tasks[0]], self.heads.values())

    @classmethod
    def stage_plan(cls, config, *, domain, registry):
        rounds = len(domain.encoder_factory().stages)  # P−1
        s = config["architecture"]["search"]
        rule = {"name": "conal_pro_conflict" if s["conflict_notice"] else "ew"}
        epochs = round_epochs(s["epochs"], rounds, s["budget"])
        return [*(SearchRound(k, epochs[k - 1], rule) for k in range(1, rounds + 1)),
                AssembleStage("derive", rounds), TrainStage("retrain", configure=from_derived("derive"))]

    def forward(self, inputs):
        z = inputs
        for stage in self.shared.stages[:self.first]:
            z = stage(z)
        shared = z
        for stage in self.shared.stages[self.first:]:
            shared = stage(shared)
        out = {}
        for t in self.tasks:
            own = z
            for stage in self.private[t]:
                own = stage(own)
            pi = torch.softmax(self.alpha[t], dim=0)
            out[t] = self.heads[t](pi[0] * own + pi[1] * shared)
        return out

    def shared_parameters(self):
        return [p for block in self.parameter_blocks() for p in block]

    def task_parameters(self, task):
        return [*self.private[task].parameters(), *self.heads[task].parameters()]

    def architecture_parameters(self):
        return list(self.alpha.values())

    def parameter_blocks(self):
        """One block per trunk stage, then the round's module in question (stages P−k … P−1) last."""
        trunk = [list(s.parameters()) for s in self.shared.stages[:self.first]]
        module = [p for s in self.shared.stages[self.first:] for p in s.parameters()]
        return [b for b in [*trunk, module] if b]

    def decide(self) -> dict:
        """The round's decision: argmax α_t per active task (ties go to (b)), as plain JSON."""
        low = self.points - self.round  # P−k, path (b); path (a) is P−k+1
        alpha = torch.stack([self.alpha[t].detach().float().cpu() for t in self.tasks])
        probs = torch.softmax(alpha, 1).tolist()
        chosen = alpha.argmax(1).tolist()
        return {"round": self.round, "alpha": {t: p for t, p in zip(self.tasks, probs)},
                "branch_points": {t: low + c for t, c in zip(self.tasks, chosen)},
                "subgroup": [t for t, c in zip(self.tasks, chosen) if c == 1]}

    def search_state(self) -> dict:
        state = self.decide()
        return {"alpha": state["alpha"], "branch_points": state["branch_points"]}

    def decisions(self) -> dict[str, list[float]]:
        """Each active task's choice between (b) and (a), softmax(α_t)."""
        return self.decide()["alpha"]


# -- the run's stages -------------------------------------------------------------------------

def round_epochs(epochs: int, rounds: int, budget: str) -> list[int]:
    """Epochs of each round: ``search.epochs`` each, or that total split equally (earlier rounds
    take the remainder; at least 1 each)."""
    if budget == "round":
        return [epochs] * rounds
    base, extra = divmod(epochs, rounds)
    return [max(1, base + (1 if k < extra else 0)) for k in range(rounds)]


def restricted(domain, tasks: list[str]):
    """The domain seen by one round: the same data and factories, only ``tasks`` (its losses,
    evaluation and the engine's loss terms); what the config's ``domain.tasks`` would build."""
    view = copy.copy(domain)
    view.tasks = [t for t in domain.tasks if t.name in tasks]
    return view


class SearchRound(Stage):
    """Round k: a bi-level search of ``conal_pro`` with ``round: k`` over the tasks no earlier
    round assigned, then its decision (argmax α of the last epoch) in the results."""

    def __init__(self, k: int, epochs: int, rule: dict):
        self.name = f"round{k}"
        self.k = k
        self.epochs = epochs
        self.rule = rule

    def active(self, ctx: StageContext) -> list[str]:
        assigned = {t for j in range(1, self.k) for t in ctx.previous[f"round{j}"]["subgroup"]}
        return [t for t in ctx.domain.task_names if t not in assigned]

    def run(self, ctx: StageContext) -> dict:
        active = self.active(ctx)
        if not active:
            ctx.echo(f"{self.name}: every task is assigned; nothing to search")
            return {"stage": self.name, "round": self.k, "active": [], "subgroup": [], "branch_points": {},
                    "epochs_trained": 0}
        config = copy.deepcopy(ctx.config)
        config["architecture"].update(round=self.k)
        config["architecture"]["search"]["epochs"] = self.epochs
        config["domain"]["tasks"] = active  # recorded in the round's config.yaml: it rebuilds this round
        domain = restricted(ctx.domain, active)
        rule = dict(self.rule)
        results = BilevelSearch(self.name, weighting=lambda c: rule).run(replace(ctx, config=config, domain=domain))
        model = build_architecture(config, ctx.registry, domain)
        model.load_state_dict(load(ctx.stage_dir / "model.pt"))
        decision = model.decide()
        ctx.echo(f"{self.name}: subgroup {decision['subgroup'] or '(none)'}; branch points "
                 + ", ".join(f"{t}={p}" for t, p in decision["branch_points"].items()))
        return {**results, **decision, "active": active}


def assemble(tasks: list[str], decisions: list[dict], points: int) -> dict:
    """The tree of the rounds' decisions (round k's subgroup branches at P−k+1; a task that
    chose (b) in the last round branches at 1) as plain JSON."""
    branch, subgroups, alpha = {}, [], {}
    for k, d in enumerate(decisions, start=1):
        branch.update(d["branch_points"])
        members = [t for t in tasks if t in d["subgroup"]]
        if members:
            subgroups.append({"round": k, "branch_point": points - k + 1, "tasks": members})
        if d.get("alpha"):
            alpha[f"round{k}"] = d["alpha"]
    missing = [t for t in tasks if t not in branch]
    if missing:
        raise ValueError(f"conal_pro: no round decided tasks {missing}")
    grouped = {t for g in subgroups for t in g["tasks"]}
    groups = []
    for q in range(1, points):  # encoder stage q (1-based)
        trunk = [t for t in tasks if branch[t] > q]
        level = [trunk] if trunk else []
        level += [g["tasks"] for g in subgroups if g["branch_point"] <= q]
        level += [[t] for t in tasks if t not in grouped and branch[t] <= q]
        groups.append(level)
    return {"architecture": {"name": "tree", "groups": groups}, "branch_points": {t: branch[t] for t in tasks},
            "subgroups": subgroups, "alpha": alpha}


class AssembleStage(Stage):
    """Assemble the rounds' decisions into a ``tree`` (``architecture.json``), with each
    round's decisions' margins (``margins.record``, labelled ``round<k> <task>``); nothing is
    trained."""

    def __init__(self, name: str, rounds: int):
        self.name = name
        self.rounds = rounds

    def run(self, ctx: StageContext) -> dict:
        decisions = [ctx.previous[f"round{k}"] for k in range(1, self.rounds + 1)]
        derived = assemble(ctx.domain.task_names, decisions, self.rounds + 1)
        choices = {f"{r} {t}": p for r, by_task in derived["alpha"].items() for t, p in by_task.items()}
        margins.record(derived, choices, min_margin(ctx.arch_config), self.name, ctx.echo)
        atomic_write_text(ctx.stage_dir / ARCHITECTURE_FILE, json.dumps(derived, indent=2) + "\n")
        ctx.echo(f"{self.name}: {describe(derived)}; subgroups "
                 + (", ".join(f"{g['tasks']} at {g['branch_point']}" for g in derived["subgroups"]) or "none"))
        searched = [d["parameters"] for d in decisions if d.get("parameters")]
        return {"stage": self.name, "run_dir": str(ctx.stage_dir), "derived": derived,
                "searched_parameters": max(searched, key=lambda c: c["total"]) if searched else None}


@hookimpl
def mtl_register(registry):
    registry.add_architecture(ConalPro)
