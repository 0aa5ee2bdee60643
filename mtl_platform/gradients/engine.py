"""The gradient engine (DESIGN.md §3.1–3.2, §8): the one place per-task gradients are formed.

``backward(losses, params=None, weighting=None)`` computes what the weighting declared
(nothing more), asks it for its answer and **adds** the resulting gradients to ``.grad``
exactly as ``Tensor.backward`` would. ``step(optimizers)`` steps and zeroes once every
``accumulate`` calls, so gradient accumulation over micro-batches is the engine's business
(applied gradients carry 1/accumulate: the accumulated gradient is the mean over micro-batches;
each micro-batch's per-task gradients are what the weighting sees).

Who gets which gradient (``Weighting.scales_heads``):
- loss weightings: every parameter gets ∇(Σ_t w_t L_t);
- gradient methods: the gradient space gets the combined gradient, every other parameter
  the unweighted ∇(Σ_t L_t) — on a task's own head that is ∇L_t.

Paths, each at the floor of "one forward, m backward passes" or one pass above it:
- ``LOSSES``: one backward of Σ_t w_t L_t (+ the weighting's auxiliary loss).
- ``param`` mode, default gradient space (the model's shared parameters): one batched VJP of
  the m losses w.r.t. *all* trainable model parameters gives every per-task gradient; the
  shared columns go to the weighting, the rest are summed with the right coefficients. No
  further backward. Memory: m × (number of model parameters).
- ``param`` mode with explicit ``params`` (UDA chooses them): a batched VJP over ``params``,
  then one ordinary backward of Σ_t c_t L_t for everything else (a discriminator outside the
  model included), and the gradient space is corrected to the combined gradient.
- ``rep`` mode: the batched VJP runs only down to the shared representation z (cheap); one
  backward of Σ_t c_t L_t then carries the combined gradient into the encoder through an
  extra gradient injected at z. Used where the architecture exposes one z and the weighting
  needs the Gramian or the Jacobian over it; elsewhere the engine falls back to ``param``
  and says so once.

Gramians are accumulated in float64 (``combine.gramian``; ``gramian_dtype="native"`` keeps the
gradients' dtype): a float32 Gramian of near-opposite gradients is indefinite. The weighting
then works, and keeps its state, in float64.

AMP: the ``torch.amp.GradScaler`` sits inside the engine (``scaler=``): per-task gradients
are taken of the scaled losses (so fp16 gradients do not underflow) and divided by the scale
before the weighting sees them; everything applied to ``.grad`` stays scaled, and ``step``
calls ``scaler.step``/``scaler.update``, which unscale, skip steps with inf/NaN gradients and
adapt the scale. The scale is read as a device tensor (no host sync). The forward runs under
``torch.autocast`` set up by the trainer.

Distributed runs (DESIGN.md §3.7, ``mtl_platform.distributed``): the engine is where the ranks
meet, before the weighting runs, so every rank computes the same answer from the global batch.
The loss vector is all-reduced to its mean (loss weightings, ``after_step`` closures). ``param``
mode: the m × P Jacobian of every trainable parameter is all-reduced to its mean, one flat
buffer, and everything applied comes from it (no further communication). ``rep`` mode: each
rank's rows of z are disjoint coordinates of the global z, so the ranks' Gramian pieces
J_r J_rᵀ are summed (m × m, divided by world²) and each rank applies the answer to its own rows;
a weighting that needs the Jacobian over z uses ``param`` instead (gathering J over z is not
implemented). The accumulated Gramian path is not used: (Σ_r J_r)(Σ_r J_r)ᵀ ≠ Σ_r J_r J_rᵀ, and the
cross terms need the Jacobian, so the engine all-reduces the Jacobian instead and says so once.
Gradients a backward pass of a rank's own losses leaves in ``.grad`` (the loss path, ``rep``
mode, an explicit space's other parameters) are averaged in one all-reduce of one flat buffer.
Weightings that draw random numbers (PCGrad, GradDrop, RLW, …) draw the same numbers on every
rank: all ranks seed alike, shards have equal sizes, and every rank evaluates alike, so their
generators stay in step. The sequential update (several steps per batch) is refused.

Diagnostics (every ``diagnostics_every`` steps, on the device): task weights, gradient norms,
pairwise cosines and the fraction of conflicting pairs, over the shared parameters. For a
loss-only weighting this costs one extra batched VJP on those steps only.
"""
from __future__ import annotations

import sys
from typing import Mapping, Sequence

import torch
from torch import Tensor, nn

from .. import distributed
from ..contracts.weighting import Needs, Weighting
from ..errors import UserError
from .accumulate import GramianAccumulator
from .combine import GRAMIAN_DTYPES, answer_hint, form, gramian
from .spaces import AccumulatedSpace, ExplicitSpace, JacobianSpace, RepSpace, task_gradients

MODES = ("param", "rep")
GRAMIAN_PATHS = ("auto", "jacobian", "accumulate")


def _without_gradients(closure):
    """``closure`` run under ``torch.no_grad``, its losses detached."""

    def run():
        with torch.no_grad():
            return {k: v.detach() for k, v in closure().items()}
    return run


def _stderr(message: str) -> None:
    """The engine's default echo: stderr, on rank 0 only in a distributed run."""
    if distributed.writes():
        print(message, file=sys.stderr)


def _global(closure):
    """``closure``'s losses as means over ranks (a distributed run's weighting sees the global
    batch's losses in ``after_step`` too); in one process ``closure`` itself."""
    if distributed.world() <= 1:
        return closure

    def run():
        losses = closure()
        names = list(losses)
        means = distributed.mean_(torch.stack([losses[k].reshape(()).float() for k in names]))
        return dict(zip(names, means.unbind()))
    return run


_DISTRIBUTED_PATH_NOTE = ("gradients: task Gramian from the per-task Jacobian in a distributed run (the ranks' "
                          "accumulated Gramians do not sum to the global one: (sum_r J_r)(sum_r J_r)^T is not "
                          "sum_r J_r J_r^T, so the m x P Jacobian is all-reduced instead)")


class GradientEngine:
    """Computes what a weighting declares and applies the combined update."""

    def __init__(self, model: nn.Module, weighting: Weighting, tasks: Sequence[str], mode: str = "param",
                 diagnostics_every: int = 0, echo=None, scaler=None, accumulate: int = 1,
                 gramian_dtype: str = "float64", gramian_path: str = "auto", jacobian_limit_mb: float = 512):
        if mode not in MODES:
            raise UserError(f"gradients.mode: got {mode!r}, allowed: {', '.join(MODES)}")
        if gramian_dtype not in GRAMIAN_DTYPES:
            raise UserError(f"gradients.gramian_dtype: got {gramian_dtype!r}, allowed: {', '.join(GRAMIAN_DTYPES)}")
        if gramian_path not in GRAMIAN_PATHS:
            raise UserError(f"gradients.gramian_path: got {gramian_path!r}, allowed: {', '.join(GRAMIAN_PATHS)}")
        self.gramian_dtype = gramian_dtype
        self.gramian_path = gramian_path
        self.jacobian_limit_mb = float(jacobian_limit_mb)
        self.jacobian_buffer: Tensor | None = None  # the m × P buffer of JacobianSpace, kept across steps
        self.model = model
        self.weighting = weighting
        self.tasks = list(tasks)
        self.mode = mode
        self.diagnostics_every = diagnostics_every
        self.echo = echo or _stderr
        self.scaler = scaler
        self.accumulate = int(accumulate)
        self.micro_steps = 0
        self.stepped = False  # whether the last ``step`` call stepped the optimizers
        self.last_weights: Tensor | None = None
        self.steps = 0
        self.diagnostics: list[tuple[int, Tensor, tuple]] = []  # (step, flat values on the device, extra names)
        self._said: set[str] = set()
        self.accumulator = self._accumulator_for(weighting)

    # -- helpers -------------------------------------------------------------------------
    def say_once(self, message: str) -> None:
        if message not in self._said:
            self._said.add(message)
            self.echo(message)

    def terms(self, losses: Mapping[str, Tensor]) -> list[Tensor]:
        """The task losses as scalars in task order, in full precision (the spaces differentiate
        each one alone: ``jacobian.task_jacobian``)."""
        missing = [t for t in self.tasks if t not in losses]
        if missing:
            raise KeyError(f"losses lack tasks {missing}; got {sorted(losses)}")
        terms = [losses[t].reshape(()) for t in self.tasks]
        return [t.float() if t.dtype in (torch.float16, torch.bfloat16) else t for t in terms]

    def shared(self) -> list[Tensor]:
        return [p for p in self.model.shared_parameters() if p.requires_grad]

    def block_sizes(self) -> list[int]:
        blocks = self.model.parameter_blocks() if hasattr(self.model, "parameter_blocks") else [self.shared()]
        sizes = [sum(p.numel() for p in b if p.requires_grad) for b in blocks]
        return [s for s in sizes if s > 0]

    def _mode_for(self, weighting: Weighting, params) -> str:
        mode = weighting.mode or self.mode
        if mode != "rep":
            return "param"
        rep = getattr(self.model, "rep", None)
        why = None
        if params is not None:
            why = "an explicit gradient space was given"
        elif weighting.needs is Needs.BLOCK_GRAMIANS:
            why = "the weighting needs per-block Gramians"
        elif weighting.needs is Needs.JACOBIAN and distributed.world() > 1:
            why = "a distributed run reduces the Gramian's pieces over z, not the Jacobian"
        elif not getattr(self.model, "has_rep", False) or not isinstance(rep, Tensor) or not rep.requires_grad:
            why = "the architecture exposes no single shared representation"
        if why:
            self.say_once(f"gradients: rep mode unavailable for weighting {weighting.name!r} ({why}); using param")
            return "param"
        return "rep"

    def _accumulator_for(self, weighting: Weighting) -> GramianAccumulator | None:
        """Module-wise Gramian accumulation (``gradients.gramian_path``) for a weighting that needs
        only Gramians in ``param`` mode: always with ``accumulate``; with ``auto`` when the m × P
        Jacobian of the model's trainable parameters would exceed ``jacobian_limit_mb``. Decided
        once, when the engine is built (the forward hooks must see the first forward)."""
        self._path_note = None
        if weighting.needs not in (Needs.GRAMIAN, Needs.BLOCK_GRAMIANS) or (weighting.mode or self.mode) != "param":
            return None
        if self.gramian_path == "jacobian" or not self.shared():
            return None
        if distributed.world() > 1:
            self._path_note = _DISTRIBUTED_PATH_NOTE
            return None
        params = [p for p in self.model.parameters() if p.requires_grad]
        size_mb = len(self.tasks) * sum(p.numel() * p.element_size() for p in params) / 2 ** 20
        blocks = (self.model.parameter_blocks() if weighting.needs is Needs.BLOCK_GRAMIANS
                  and hasattr(self.model, "parameter_blocks") else [self.shared()])
        accumulator = GramianAccumulator(self.model, blocks)
        share = accumulator.closed_form_share()
        if self.gramian_path == "auto" and share < 0.9 and size_mb <= self.jacobian_limit_mb:
            accumulator.close()
            self._path_note = (f"gradients: task Gramian from the per-task Jacobian ({size_mb:.0f} MiB, within "
                               f"gradients.jacobian_limit_mb {self.jacobian_limit_mb:g}; {share:.0%} of the shared "
                               f"parameters in layers with a closed form)")
            return None
        why = ("gradients.gramian_path: accumulate" if self.gramian_path == "accumulate" else
               f"{share:.0%} of the shared parameters in linear, convolution and batch-norm layers"
               if share >= 0.9 else
               f"the {len(self.tasks)} x P Jacobian would take {size_mb:.0f} MiB > gradients.jacobian_limit_mb "
               f"{self.jacobian_limit_mb:g}")
        self._path_note = f"gradients: task Gramian accumulated module by module, no Jacobian ({why})"
        self._verified = False
        return accumulator

    def _verify(self, space, terms: list[Tensor], amp) -> bool:
        """On the first accumulated step, check the accumulated Gramian's diagonal against the
        squared norms of the task gradients from plain backward passes (one task at a time, so
        without the m × P Jacobian): a parameter used outside its module's ``forward`` — the one
        thing the accumulation assumes away — shows up here."""
        self._verified = True
        gram = space.gram()
        norms = []
        for term in terms:
            scaled = term * amp if amp is not None else term
            grads = torch.autograd.grad(scaled, self.accumulator.space, retain_graph=True, allow_unused=True)
            norms.append(sum(g.double().pow(2).sum() for g in grads if g is not None) /
                         (amp.double() ** 2 if amp is not None else 1.0))
        norms = torch.stack([torch.as_tensor(n, dtype=torch.float64) for n in norms]).to(gram.device)
        tolerance = 1e-3 * norms.max() + torch.finfo(torch.float64).tiny
        return bool(((gram.diagonal().double() - norms).abs() <= tolerance).all())

    def _space_for(self, weighting: Weighting, params, reusable: bool = False):
        """The gradient space of this call (see ``spaces``); ``reusable``: one that can apply
        several answers of one computation (never the accumulated one)."""
        mode = self._mode_for(weighting, params)
        if mode == "rep":
            return RepSpace(self.model.rep, self.gramian_dtype)
        if params is not None:
            inside = {id(p) for p in params}
            others = [p for p in self.model.parameters() if p.requires_grad and id(p) not in inside]
            return ExplicitSpace(params, self.gramian_dtype, others)
        shared = self.shared()
        space_ids = {id(p) for p in shared}
        others = [p for p in self.model.parameters() if p.requires_grad and id(p) not in space_ids]
        if self.accumulator is not None and weighting is self.weighting and not reusable:
            self.say_once(self._path_note)
            return AccumulatedSpace(self.accumulator, others, self.gramian_dtype, self.block_sizes())
        if self._path_note and weighting is self.weighting and not reusable:
            self.say_once(self._path_note)
        return JacobianSpace(shared, others, self.block_sizes(), self.gramian_dtype, self)

    # -- AMP: a step the scaler skips leaves the weighting as it was --------------------------
    def _snapshot(self, weighting: Weighting) -> dict | None:
        """With a GradScaler (fp16), the weighting's buffers before it answers (None without)."""
        if self.scaler is None:
            return None
        return {name: buf.clone() for name, buf in weighting.named_buffers()}

    def _keep_state_on_overflow(self, weighting: Weighting, saved: dict | None, computed: dict) -> None:
        """With a GradScaler: where the unscaled gradients the weighting saw are not finite (an
        fp16 overflow; the scaler will skip this step and lower its scale), put its buffers back as
        they were (a buffer this call created starts from zeros), on the device, no host sync. Else
        one overflow would leave NaN in a weighting's state for good (DB-MTL's gradient EMA,
        equilibrium's weights). The skipped step's answer itself is not finite, which is how the
        scaler sees the overflow."""
        if saved is None or not computed:
            return
        finite = torch.stack([torch.isfinite(v).all() for v in computed.values()]).all()
        for name, buf in weighting.named_buffers():
            old = saved.get(name)
            keep = old if old is not None and old.shape == buf.shape else torch.zeros_like(buf)
            buf.copy_(torch.where(finite, buf, keep.to(buf)))

    # -- distributed runs (DESIGN.md §3.7) ---------------------------------------------------------
    def _global_losses(self, vector: Tensor) -> Tensor:
        """The loss vector the weighting sees: this rank's, or in a distributed run the mean over
        ranks (the loss of the global batch; every rank's shard has the same size)."""
        detached = vector.detach()
        return distributed.mean_(detached.clone()) if distributed.world() > 1 else detached

    def _global_present(self, present: Tensor | None) -> Tensor | None:
        """Which tasks have a labelled sample in the batch: on this rank, or in a distributed run on
        any rank (the global batch's)."""
        if present is None or distributed.world() <= 1:
            return present
        return distributed.sum_(present.to(torch.float32)) > 0

    def _distribute(self, space):
        """Give ``space`` its reduction over ranks: the per-task gradients (m × P, one all-reduce
        to their mean) in ``param`` mode, the Gramian's pieces (m × m, summed, /world²) in ``rep``
        mode. In one process the space is returned as it is."""
        size = distributed.world()
        if size > 1:
            if isinstance(space, RepSpace):
                space.reduce_gramian = lambda gram: distributed.sum_(gram).div_(size * size)
            else:
                space.reduce = distributed.mean_
        return space

    def _average_local_gradients(self, space=None) -> None:
        """In a distributed run, average the gradients a backward pass of this rank's own losses
        left in ``.grad`` (the loss path, ``rep`` mode, an explicit space's other parameters):
        one all-reduce of one flat buffer."""
        if distributed.world() > 1 and (space is None or space.local_backward):
            params = list(self.model.parameters())
            if isinstance(space, ExplicitSpace):
                known = {id(p) for p in params}
                params += [p for p in space.params if id(p) not in known]
            distributed.average_gradients(params)

    # -- the call -------------------------------------------------------------------------
    def backward(self, losses: Mapping[str, Tensor], params: Sequence[Tensor] | None = None,
                 weighting: Weighting | None = None, present: Tensor | None = None) -> Tensor:
        """Add the weighting's update to ``.grad``; return its answer (detached). ``present``: an
        optional (m,) bool tensor, which tasks have a labelled sample in the batch (partial labels),
        handed to the weighting (``Weighting.respond``)."""
        terms = self.terms(losses)
        vector = torch.stack(terms)
        # Gramians, solvers and weights in full precision, even inside the trainer's autocast.
        try:
            with torch.autocast(vector.device.type, enabled=False):
                return self._backward(vector, params, weighting or self.weighting, terms, present)
        finally:
            if self.accumulator is not None:
                self.accumulator.clear()  # the module outputs of this forward are used up

    def _backward(self, vector: Tensor, params, weighting: Weighting, terms: list[Tensor],
                  present: Tensor | None = None) -> Tensor:
        detached = self._global_losses(vector)
        present = self._global_present(present)
        amp = self.scaler.scale(torch.ones((), device=vector.device)) if self.scaler is not None else None
        apply = (amp if amp is not None else 1.0) / self.accumulate  # what every applied gradient carries
        self.steps += 1
        diagnose = self.diagnostics_every and self.steps % self.diagnostics_every == 0
        if params is None and not self.shared() and weighting.needs is not Needs.LOSSES:
            # nothing is shared (a derived tree of separate networks): every task's gradient
            # reaches only its own parameters, so there is nothing to combine
            self.say_once(f"gradients: the model has no shared parameters; weighting {weighting.name!r} "
                          f"reduces to the plain sum of task losses")
            answer = torch.ones_like(detached)
            (vector * apply).sum().backward()
            self._average_local_gradients()
            self.last_weights = answer
            return answer
        if weighting.needs is Needs.LOSSES:
            answer = weighting.respond(detached, present=present).detach()
            (answer * vector * apply).sum().backward(retain_graph=bool(diagnose))
            self._average_local_gradients()
            if diagnose and self.shared():
                jac = distributed.mean_(task_gradients(vector, amp, self.shared()))
                self.record(answer, gramian(jac, self.gramian_dtype))
            computed: dict = {}
        else:
            answer, computed = self._gradient_path(weighting, vector, amp, apply, params, diagnose, terms,
                                                   detached, present)
        aux = weighting.respond_aux(detached, present=present, **computed)
        if aux is not None:
            (aux / self.accumulate).backward()
        self.last_weights = answer if answer.dim() == 1 and answer.shape[0] == len(self.tasks) else None
        return answer

    def _gradient_path(self, weighting, vector, amp, apply, params, diagnose, terms, detached, present=None):
        m = vector.shape[0]
        space = self._distribute(self._space_for(weighting, params))
        computed = space.compute(vector, amp, weighting.needs, terms, answer_hint(weighting))
        if isinstance(space, AccumulatedSpace) and not self._verified and not self._verify(space, terms, amp):
            self.say_once(f"gradients: the accumulated task Gramian disagrees with the model's gradients (a "
                          f"parameter used outside its module's forward?); using the per-task Jacobian from now on")
            self.accumulator.close()
            self.accumulator = None
            space = self._distribute(self._space_for(weighting, params))
            computed = space.compute(vector, amp, weighting.needs, terms, answer_hint(weighting))
        saved = self._snapshot(weighting)
        answer = weighting.respond(detached, present=present, **computed).detach()
        self._keep_state_on_overflow(weighting, saved, computed)
        p, blocks = space.size()
        form(answer, m, p, blocks, answer_hint(weighting))  # an answer of no known form: one clear error
        coeff = self._coefficients(weighting, answer, m, p, blocks, vector)
        space.apply(answer, coeff, apply)
        self._average_local_gradients(space)
        if diagnose:
            self.record(answer, space.gram())
        return answer, computed

    def backward_sequence(self, losses: Mapping[str, Tensor], optimizers: Sequence[torch.optim.Optimizer],
                          params: Sequence[Tensor] | None = None) -> Tensor:
        """The sequential update protocol (DGE's paper form, spec gradients.md §2.2–2.3): the
        weighting's ``sequence`` rows r_0 … r_{s−1}, all computed at the current parameters
        from one set of task gradients, then one optimizer step per row. The space gets row
        k's combination; every parameter outside it gets 1/s of its usual gradient at each
        step (∇Σ_t L_t for a gradient method), so with plain SGD the s steps equal one step
        of the summed update. Returns the rows' sum (the summed form's task weights)."""
        if self.accumulate != 1:
            raise UserError(f"train.accumulate: got {self.accumulate}; the sequential update steps the "
                            f"optimizer several times per batch and cannot accumulate gradients")
        if distributed.world() > 1:
            raise UserError("the sequential update (several optimizer steps per batch) does not run "
                            "distributed; train it in one process")
        weighting = self.weighting
        if weighting.needs is Needs.LOSSES:  # a loss weighting is one step: the summed update
            answer = self.backward(losses, params)
            self.step(optimizers)
            return answer
        terms = self.terms(losses)
        vector = torch.stack(terms)
        try:
            with torch.autocast(vector.device.type, enabled=False):
                rows = self._sequence(vector, params, weighting, optimizers, terms)
        finally:
            if self.accumulator is not None:
                self.accumulator.clear()
        return rows.sum(0)

    def _sequence(self, vector: Tensor, params, weighting: Weighting, optimizers, terms: list[Tensor]) -> Tensor:
        amp = self.scaler.scale(torch.ones((), device=vector.device)) if self.scaler is not None else None
        scale = amp if amp is not None else 1.0
        self.steps += 1
        diagnose = self.diagnostics_every and self.steps % self.diagnostics_every == 0
        space = self._space_for(weighting, params, reusable=True)
        computed = space.compute(vector, amp, weighting.needs, terms, answer_hint(weighting))
        rows = weighting.sequence(vector.detach(), **computed).detach()
        m, (p, blocks) = vector.shape[0], space.size()
        trainable = [q for q in self.model.parameters() if q.requires_grad]
        for row in rows:
            form(row, m, p, blocks, answer_hint(weighting))
        coeffs = torch.stack([self._coefficients(weighting, row, m, p, blocks, vector) for row in rows]) / len(rows)
        # a gradient method weights the losses outside the space by 1/s on every row (`_coefficients`)
        uniform = len(rows) == 1 or not weighting.scales_heads
        steps = space.step_gradients(rows, coeffs, scale, trainable, uniform=uniform)
        if diagnose:
            self.record(rows.sum(0), space.gram())
        self.micro_steps += 1
        self.stepped = True
        for grads in steps:  # every row was computed at the same parameters; now step through them
            for q, g in zip(trainable, grads):
                q.grad = g
            for opt in optimizers:
                self.scaler.step(opt) if self.scaler is not None else opt.step()
                opt.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.update()  # once: every row was scaled by the same factor
        self.last_weights = rows.sum(0)
        return rows

    def step(self, optimizers: Sequence[torch.optim.Optimizer], closure=None) -> bool:
        """Step the optimizers once every ``accumulate`` calls (through the AMP scaler, if any),
        then zero their gradients; return whether a step was taken. After a step the weighting's
        ``after_step`` gets ``closure`` (re-evaluating the batch's ``{task: loss}``, run without
        gradients), if the update protocol gave one (FAMO, GradNorm)."""
        if not self._step(optimizers):
            return False
        if closure is not None:
            self.weighting.after_step(_global(_without_gradients(closure)))
        elif type(self.weighting).after_step is not Weighting.after_step:
            self.say_once(f"gradients: weighting {self.weighting.name!r} acts after each optimizer step, but this "
                          f"update protocol gives the engine no closure to re-evaluate the batch; it is skipped")
        return True

    def _step(self, optimizers) -> bool:
        self.micro_steps += 1
        self.stepped = self.micro_steps % self.accumulate == 0
        if not self.stepped:
            return False
        for opt in optimizers:
            if self.scaler is not None:
                self.scaler.step(opt)
            else:
                opt.step()
        if self.scaler is not None:
            self.scaler.update()
        for opt in optimizers:
            opt.zero_grad(set_to_none=True)
        return True

    def state_dict(self) -> dict:
        """The engine's counters (and AMP scaler) for a checkpoint."""
        return {"steps": self.steps, "micro_steps": self.micro_steps,
                "scaler": self.scaler.state_dict() if self.scaler is not None else None}

    def load_state_dict(self, state: dict) -> None:
        self.steps, self.micro_steps = state["steps"], state["micro_steps"]
        if self.scaler is not None:
            self.scaler.load_state_dict(state["scaler"])

    def flush(self, optimizers: Sequence[torch.optim.Optimizer]) -> None:
        """At an epoch's end, step on a partly accumulated gradient rather than carry it over."""
        if self.micro_steps % self.accumulate:
            self.micro_steps += self.accumulate - 1 - self.micro_steps % self.accumulate
            self._step(optimizers)

    @staticmethod
    def _coefficients(weighting, answer: Tensor, m: int, p: int, blocks: int, like: Tensor) -> Tensor:
        """The loss coefficients for parameters outside the gradient space."""
        if weighting.scales_heads and form(answer, m, p, blocks, answer_hint(weighting)) == "weights":
            return answer.to(like.dtype)
        return torch.ones(m, dtype=like.dtype, device=like.device)

    # -- diagnostics -----------------------------------------------------------------------
    def record(self, answer: Tensor, gram: Tensor) -> None:
        """Keep this step's conflict fraction, gradient norms, pairwise cosines and task weights
        (from the task Gramian ``gram``) as one flat tensor on the device (NaN weights where the
        answer is not task weights)."""
        m = gram.shape[0]
        norms = gram.diagonal().clamp_min(0).sqrt()
        scale = norms[:, None] * norms[None, :]
        cos = torch.where(scale > 0, gram / scale.clamp_min(torch.finfo(gram.dtype).tiny),
                          torch.zeros_like(gram)).clamp(-1.0, 1.0)  # a zero gradient has cosine 0
        upper = torch.triu_indices(m, m, offset=1, device=gram.device)
        pairs = cos[upper[0], upper[1]]
        conflict = (pairs < 0).sum(dtype=gram.dtype).reshape(1) / max(pairs.numel(), 1)
        weights = (answer.to(gram.dtype) if answer.dim() == 1 and answer.shape[0] == m
                   else torch.full((m,), float("nan"), dtype=gram.dtype, device=gram.device))
        extra = self.weighting.diagnostics()
        values = [v.detach().reshape(1).to(gram) for v in extra.values()]
        self.diagnostics.append((self.steps, torch.cat([conflict, norms, pairs, weights, *values]).detach(),
                                 tuple(extra)))

    def pop_diagnostics(self) -> list[dict]:
        """The recorded diagnostics as plain rows (one host transfer), emptying the buffer."""
        if not self.diagnostics:
            return []
        m = len(self.tasks)
        names = [f"{self.tasks[i]}|{self.tasks[j]}" for i in range(m) for j in range(i + 1, m)]
        values = torch.cat([flat for _, flat, _ in self.diagnostics]).tolist()  # one host transfer
        rows, offset = [], 0
        for step, flat, extra in self.diagnostics:
            flat, offset = values[offset:offset + flat.numel()], offset + flat.numel()
            norms, rest = flat[1:1 + m], flat[1 + m:]
            pairs, weights = rest[:len(names)], rest[len(names):len(names) + m]
            row = {"step": step, "conflict": flat[0], "norm": dict(zip(self.tasks, norms)),
                   "cos": dict(zip(names, pairs))}
            if not any(w != w for w in weights):  # NaN: the answer was not task weights
                row["weights"] = dict(zip(self.tasks, weights))
            if extra:  # the weighting's own scalars (``Weighting.diagnostics``)
                row["weighting"] = dict(zip(extra, rest[len(names) + m:]))
            rows.append(row)
        self.diagnostics = []
        return rows
