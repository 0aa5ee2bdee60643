"""Learning to Branch (Guo, Lee & Ulbricht, "Learning to Branch for Multi-Task Learning", ICML 2020;
spec thesis.md §3.1, §3.6 "Gradient-conflict study", §3.8): a layered supernet whose nodes pick
their parents by Gumbel-softmax sampling, derived into a ``tree`` and retrained."""
from __future__ import annotations

import torch
from torch import nn

from mtl_platform.contracts import Architecture
from mtl_platform.errors import UserError
from mtl_platform.hookspecs import hookimpl
from mtl_platform.params import Param
from mtl_platform.stages import BilevelSearch, DeriveStage, TrainStage, from_derived
from mtl_platform.stages.bilevel import search_section

# the search schedule's defaults (``architecture.search.*``), also used by a model built directly
SCHEDULE = {"tau": 2.0, "decay": 0.965, "warmup": 2, "hard": False, "epochs": 20}


def gumbel_softmax(logits: torch.Tensor, tau: float, hard: bool) -> torch.Tensor:
    """One Gumbel-softmax sample per row (Jang et al., ICLR 2017; the noise comes from torch's
    global generator, which checkpoints save and restore). ``hard``: the straight-through
    estimator, the one-hot of the sample forward and the soft sample's gradient backward."""
    noise = -torch.empty_like(logits).exponential_().log()  # −log(Exp(1)) ~ Gumbel(0, 1)
    soft = torch.softmax((logits + noise) / tau, dim=-1)
    if not hard:
        return soft
    one_hot = torch.zeros_like(soft).scatter_(-1, soft.argmax(-1, keepdim=True), 1.0)
    return one_hot - soft.detach() + soft


def mix(weights: torch.Tensor, outputs: list):
    """Σ_j w_j · z_j over the parents' outputs; a stage passing a tuple (SegNet's pooling indices)
    is mixed element-wise, and a non-float element is taken from the parent of largest weight."""
    first = outputs[0]
    if isinstance(first, (tuple, list)):
        return type(first)(mix(weights, [o[i] for o in outputs]) for i in range(len(first)))
    if not torch.is_floating_point(first):
        return outputs[int(weights.detach().argmax())]
    stacked = torch.stack(outputs)
    return (weights.to(stacked.dtype).view(-1, *[1] * first.dim()) * stacked).sum(0)


class LTB(Architecture):
    """Learning to Branch (Guo et al., ICML 2020, §3): a layered supernet of encoder stages in
    which every node picks its parent in the layer below by Gumbel-softmax sampling.

    Supernet (§3, the "tree-structured design space"): with K encoder stages and m tasks, layer
    k (0-based) holds copies of stage k, ``width`` of them (default m) below the last layer
    and exactly m in the last, node i of the last layer being task i's (its head reads it).
    Node i of layer k ≥ 1 has logits α^k_i over the nodes of layer k−1 and reads
    Σ_j d^k_ij z^{k−1}_j with d^k_i = softmax((α^k_i + g)/τ), g ~ Gumbel(0, 1) (§3, the
    branching operation as a Gumbel-softmax sample of the parent; the paper's parent
    distribution θ is softmax(α) here, so log θ = α up to a constant). Layer 0 is ``width``
    parallel copies that all read the input, so the search space contains separate networks
    from the first stage on (CoNAL's branch point 1) as well as sharing every stage but the
    last. The last stage is always task-specific, as the paper's leaves are: the derived
    tree's branch points lie in 1 … P−1.

    Search (thesis §3.6, LTB in the gradient-conflict study): weights and logits trained
    jointly on the whole training set (``search.bilevel: false``; ``true`` steps α on the
    second half, DARTS-style), by the plain sum of task losses (the search's ``ew``), logits with
    the same optimizer as the weights (Adam, weight decay 1e-5; the thesis's LTB learning rate
    is 1e-4 for 200 epochs, the default ``search.alpha_lr`` is the platform's 3e-3, which
    moves the logits in the default 20 epochs), logits starting at zero (uniform parents). For the first
    ``search.warmup`` epochs only the weights train: the forward reads the logits detached,
    so they get no gradient (``.grad`` stays None and the optimizers skip them, weight decay
    included). Temperature τ_e = ``tau`` · ``decay``^e for 0-based epoch e, set by
    ``set_epoch`` (τ = 2 and 20 warm-up epochs of 200: thesis §3.6).

    The paper itself is not among the project's seeds: section references are to its method
    section (§3) as a whole. Choices it (or the thesis's summary of its re-implementation)
    leaves open, and what this implementation does:
    - decay rate: not given; default 0.965 per epoch [ASSUME];
    - warm-up: 20 of 200 epochs in the thesis; default ``search.epochs`` 20 and ``warmup`` 2
      (the same tenth); during warm-up the parents are still Gumbel-sampled from the
      (frozen, uniform) logits, so every node is trained;
    - soft or hard forward samples (the sources at hand do not settle it): default soft
      (``search.hard: false``), so every task's loss reaches every node of the supernet (the
      platform's parameter-set contract); ``hard: true`` is the straight-through estimator
      (one-hot forward, the soft sample's gradient backward), under which only the sampled
      parents' nodes get gradient;
    - one sample per node per forward (the whole batch takes the same architecture);
    - evaluation (``model.eval()``) takes each node's argmax parent without noise, so the
      validation metrics logged during the search are those of the tree being found;
    - argmax ties go to the lowest index (the initial, uniform logits derive full sharing).

    Parameter sets: nodes below the last layer are shared (grouped per layer in
    ``parameter_blocks``), a last-layer node and the head belong to their task, the logits
    are the architecture parameters. Derivation (``derive``): each node keeps its argmax
    parent; walking back from each task's last node gives its path, and at stage k the tasks
    whose paths pass through the same node form one group: a ``tree`` architecture, retrained
    from fresh weights with the configured weighting (default ``ew``, the fixed equal task
    weights of LTB, thesis §3.7). Only single-input domains (one tensor per batch).
    """

    name = "ltb"
    has_rep = False
    params = (
        Param("width", int, None, "nodes per layer below the last (default: the number of tasks)", optional=True,
              bounds="[1, inf)"),
        search_section(
            Param("tau", float, SCHEDULE["tau"], "initial Gumbel-softmax temperature τ_0", bounds="(0, inf)"),
            Param("decay", float, SCHEDULE["decay"], "τ_e = τ_0 · decay^e per epoch e (0 < decay ≤ 1)",
                  bounds="(0, 1]"),
            Param("warmup", int, SCHEDULE["warmup"], "first epochs that train the weights only", bounds="[0, inf)"),
            Param("hard", bool, SCHEDULE["hard"], "straight-through one-hot samples instead of soft ones"),
            help="LTB's search: weights and parent logits trained jointly (Guo et al. 2020, §3)",
            epochs=SCHEDULE["epochs"], bilevel=False),
    )

    @classmethod
    def stage_plan(cls, config, *, domain, registry):
        return [BilevelSearch("search", weighting=lambda ctx: {"name": "ew"}), DeriveStage("derive", source="search"),
                TrainStage("retrain", configure=from_derived("derive"))]

    def __init__(self, tasks, encoder_factory, head_factory, width=None, search=None, **params):
        super().__init__(tasks, encoder_factory, head_factory, width=width, search=search, **params)
        s = {**SCHEDULE, **(search or {})}
        if s["warmup"] >= s["epochs"]:
            raise UserError(f"architecture.search.warmup: got {s['warmup']}, expected fewer than search.epochs "
                            f"({s['epochs']}), or the parent logits never train")
        self.tau0, self.decay, self.warmup, self.hard = float(s["tau"]), float(s["decay"]), s["warmup"], s["hard"]
        m = len(self.tasks)
        width = m if width is None else width
        first = encoder_factory()
        depth = len(first.stages)  # K
        if depth < 2:
            raise UserError("architecture ltb: the encoder has one stage; learning to branch needs at least two")
        sizes = [width] * (depth - 1) + [m]
        encoders = [first] + [encoder_factory() for _ in range(max(sizes) - 1)]
        self.nodes = nn.ModuleList(nn.ModuleList(encoders[i].stages[k] for i in range(n))
                                   for k, n in enumerate(sizes))
        self.logits = nn.ParameterList(nn.Parameter(torch.zeros(sizes[k], sizes[k - 1])) for k in range(1, depth))
        self.heads = nn.ModuleDict({t: head_factory(t) for t in self.tasks})
        self.set_epoch(0)

    # -- schedule -----------------------------------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        """τ for this epoch, and whether it is a warm-up epoch (the trainer calls this first)."""
        self.epoch = epoch
        self.tau = self.tau0 * self.decay ** epoch

    @property
    def warming_up(self) -> bool:
        return self.epoch < self.warmup

    # -- forward -----------------------------------------------------------------------------------
    def parents(self) -> list[list[int]]:
        """Each node's argmax parent, for layers 1 … K−1."""
        return [a.detach().argmax(1).tolist() for a in self.logits]

    def forward(self, inputs):
        if not self.training:
            return self._forward_tree(inputs)
        outs = [node(inputs) for node in self.nodes[0]]
        for k in range(1, len(self.nodes)):
            logits = self.logits[k - 1].detach() if self.warming_up else self.logits[k - 1]
            weights = gumbel_softmax(logits, self.tau, self.hard)
            outs = [node(mix(weights[i], outs)) for i, node in enumerate(self.nodes[k])]
        return {t: self.heads[t](outs[i]) for i, t in enumerate(self.tasks)}

    def _forward_tree(self, inputs):
        """The argmax tree: only nodes on some task's path run, each on its parent's output."""
        paths, parents = self.paths(), self.parents()
        outs = {}
        for k, layer in enumerate(self.nodes):
            used = sorted({p[k] for p in paths.values()})
            outs = {i: layer[i](inputs if k == 0 else outs[parents[k - 1][i]]) for i in used}
        return {t: self.heads[t](outs[i]) for i, t in enumerate(self.tasks)}

    # -- parameter sets --------------------------------------------------------------------------
    def shared_parameters(self):
        return [p for b in self.parameter_blocks() for p in b]

    def task_parameters(self, task):
        return [*self.nodes[-1][self.tasks.index(task)].parameters(), *self.heads[task].parameters()]

    def architecture_parameters(self):
        return list(self.logits)

    def parameter_blocks(self):
        blocks = [list(layer.parameters()) for layer in self.nodes[:-1]]
        return [b for b in blocks if b]

    # -- derivation --------------------------------------------------------------------------------
    def paths(self) -> dict[str, list[int]]:
        """Each task's node at every layer, walking argmax parents back from its last node."""
        parents = self.parents()
        out = {}
        for i, t in enumerate(self.tasks):
            path = [i]
            for k in range(len(self.nodes) - 1, 0, -1):
                path.append(parents[k - 1][path[-1]])
            out[t] = path[::-1]
        return out

    def groups(self) -> list[list[list[str]]]:
        """Per stage, the tasks grouped by the node their paths pass through (in node order)."""
        paths = self.paths()
        return [[[t for t in self.tasks if paths[t][k] == n] for n in sorted({p[k] for p in paths.values()})]
                for k in range(len(self.nodes))]

    def branch_points(self) -> dict[str, int]:
        """The ``tree`` rule: the first stage (1-based) at which a task runs alone (P if never)."""
        groups = self.groups()
        return {t: next((k + 1 for k, level in enumerate(groups) if [t] in level), len(groups) + 1)
                for t in self.tasks}

    def decisions(self) -> dict[str, list[float]]:
        """The parent distribution softmax(α) of every node on some task's path (layers 1 …
        K−1), labelled ``stage <k+1> node <i> (<tasks through it>)``: the choices the tree keeps."""
        paths = self.paths()
        out = {}
        for k, logits in enumerate(self.logits, start=1):
            probs = torch.softmax(logits.detach().float().cpu(), 1).tolist()
            for i in sorted({p[k] for p in paths.values()}):
                through = ", ".join(t for t in self.tasks if paths[t][k] == i)
                out[f"stage {k + 1} node {i} ({through})"] = probs[i]
        return out

    def search_state(self) -> dict:
        probs = [torch.softmax(a.detach(), 1).tolist() for a in self.logits]
        return {"tau": self.tau, "warmup": self.warming_up, "parent_probs": probs, "parents": self.parents(),
                "branch_points": self.branch_points()}

    def derive(self) -> dict:
        """The tree of argmax parents (Guo et al. §3: after the search each node keeps its most
        probable parent), as a ``tree`` architecture with one partition per stage."""
        state = self.search_state()
        return {"architecture": {"name": "tree", "groups": self.groups()},
                "branch_points": state["branch_points"], "parents": state["parents"],
                "parent_probs": state["parent_probs"]}


@hookimpl
def mtl_register(registry):
    registry.add_architecture(LTB)
