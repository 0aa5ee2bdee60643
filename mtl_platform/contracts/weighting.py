"""The weighting contract (DESIGN.md §3.2)."""
from __future__ import annotations

import enum
from itertools import chain

import torch
from torch import Tensor, nn

from ..errors import UserError
from .absent import TREATMENTS, fold, substitute, substitution
from .component import Configurable


def working_dtype(like: Tensor) -> torch.dtype:
    """The precision Gramians and weighting solvers compute in: float64, except on devices
    without it (MPS), where float32.

    The Gramians weightings receive are tiny (m × m), so double precision costs nothing
    measurable and keeps ill-conditioned systems (near-parallel gradients) solvable.
    """
    if like.device.type == "mps":
        return torch.float32
    return torch.float64


class Needs(enum.Enum):
    """What a weighting asks the gradient engine to compute."""

    LOSSES = "losses"
    GRAMIAN = "gramian"
    BLOCK_GRAMIANS = "block_gramians"
    JACOBIAN = "jacobian"


class Weighting(Configurable, nn.Module):
    """Turns per-task losses (or what the engine computed from them) into one update.

    ``weights(losses, **computed)`` receives the detached losses (m,) and, by ``needs``,
    ``gram`` (m × m, ``G = J Jᵀ``), ``block_grams`` (blocks × m × m, one per
    ``parameter_blocks()`` entry) or ``jacobian`` (m × P). It returns task weights ``w``
    (m,), per-block weights (blocks × m, with ``BLOCK_GRAMIANS``) or one aggregated shared
    gradient (P,, with ``JACOBIAN``); the engine detaches and applies them. A weighting never
    calls ``backward()``.

    ``scales_heads``: True for loss weightings (every parameter gets ∇Σ w_t L_t); False for
    gradient methods (the gradient space gets the combined gradient, every other parameter
    the unweighted ∇Σ_t L_t). ``mode`` forces ``"rep"`` or ``"param"`` (None: the config's).
    A weighting may own parameters (then it adds ``aux_loss``, given the same ``computed``)
    and state (buffers, or ``state_dict``/``load_state_dict`` overrides); random draws use
    torch's global generator, which checkpoints save and restore, or the weighting's own
    seeded generator kept in its ``state_dict`` (Agr-Rand's ``get_extra_state``). Floating-point state follows
    the working precision (``respond``): a float64 Gramian gets float64 state, and a checkpoint
    restores the precision it was saved in.

    Declared ``params`` need no ``__init__``: the constructor ``(tasks, **params)`` sets each
    as an attribute of the same name, typed and range-checked (``Configurable.set_params``;
    all of them, resolved, are also in ``self.config``), then calls ``setup()``, where a
    weighting builds its buffers, trainable parameters and derived settings. A buffer or
    parameter may take a declared parameter's name; it replaces the plain value. A subclass
    with its own ``__init__`` that calls ``super().__init__(tasks, **params)`` and assigns its
    parameters itself (the older form) works unchanged.

    ``promises`` names the properties the answer always has, which the shared property suite
    (``tests/plugins/weightings/test_weighting_properties.py``) checks on families of hard Jacobians for every
    registered weighting, third-party ones included:
    - ``"nonnegative"``: task (or per-block) weights are ≥ 0;
    - ``"no_conflict"``: the combined gradient d has g_iᵀd ≥ 0 for every task i (up to rounding);
    - ``"min_norm"``: d is the minimum-norm point of the convex hull of the task gradients
      (weights on the simplex with (Gw)_i ≥ wᵀGw for every i — MGDA's optimality condition).

    Partial labels: the engine may tell ``respond`` (and ``respond_aux``) which tasks have a
    labelled sample in the batch, ``present`` (m,) bool on the device; an absent task's loss is
    0 and its gradient row zero. ``absent_tasks`` says how the weighting takes that
    (``contracts.absent``): ``"zero"`` (default: it sees the zero row and loss as they are),
    ``"substitute"`` (it sees absent tasks replaced by the mean of the present ones) or ``"own"``
    (``weights`` and ``aux_loss`` receive ``present=`` and handle it).
    """

    needs = Needs.LOSSES
    scales_heads = True
    mode: str | None = None
    promises: tuple[str, ...] = ()
    absent_tasks = "zero"

    def __init__(self, tasks: list[str], **params):
        nn.Module.__init__(self)
        self.tasks = list(tasks)
        self.config = self.set_params(params, "weighting")
        self.setup()

    def setup(self) -> None:
        """Build buffers, trainable parameters and settings derived from the declared parameters
        (already attributes), and check what the declarations cannot (a list's length against
        the tasks); called once, at the end of ``__init__``. Nothing to build: nothing to write."""

    def register_buffer(self, name: str, tensor: Tensor | None, persistent: bool = True) -> None:
        """``nn.Module.register_buffer``; a buffer named like a declared parameter replaces its
        plain value (FAMO's ``min_losses``: the list becomes a tensor)."""
        self._release(name)
        super().register_buffer(name, tensor, persistent)

    def register_parameter(self, name: str, param: nn.Parameter | None) -> None:
        """``nn.Module.register_parameter``, with the same rule as :meth:`register_buffer`."""
        self._release(name)
        super().register_parameter(name, param)

    def _release(self, name: str) -> None:
        if name in self.__dict__ and any(p.name == name for p in self.declared_params()):
            del self.__dict__[name]

    @property
    def num_tasks(self) -> int:
        return len(self.tasks)

    def weights(self, losses: Tensor, **computed) -> Tensor:
        raise NotImplementedError

    def respond(self, losses: Tensor, present: Tensor | None = None, **computed) -> Tensor:
        """What the engine calls: ``weights``, after moving the floating-point state to the working
        dtype — that of the Gramian or Jacobian computed for it, else of the losses. ``present``
        (m,) bool: which tasks the batch labels (None: all); see ``absent_tasks``."""
        like = next((v for v in computed.values() if isinstance(v, Tensor)), losses)
        self.follow(like.dtype)
        if present is None:
            return self.weights(losses, **computed)
        if self.absent_tasks == "own":
            return self.weights(losses, present=present, **computed)
        a = self._substitution(present, like)
        if a is not None:
            losses, computed = substitute(a, losses, computed)
        return fold(self.weights(losses, **computed), a, present, self.num_tasks)

    def respond_aux(self, losses: Tensor, present: Tensor | None = None, **computed) -> Tensor | None:
        """What the engine calls for the auxiliary loss: ``aux_loss`` on the inputs ``respond`` gave
        ``weights`` (the absent tasks substituted, or ``present=`` passed on)."""
        if present is None:
            return self.aux_loss(losses, **computed)
        if self.absent_tasks == "own":
            return self.aux_loss(losses, present=present, **computed)
        like = next((v for v in computed.values() if isinstance(v, Tensor)), losses)
        a = self._substitution(present, like)
        if a is not None:
            losses, computed = substitute(a, losses, computed)
        return self.aux_loss(losses, **computed)

    def _substitution(self, present: Tensor, like: Tensor) -> Tensor | None:
        if self.absent_tasks not in TREATMENTS:
            raise ValueError(f"weighting {self.name!r}: absent_tasks is {self.absent_tasks!r}, "
                             f"allowed: {', '.join(TREATMENTS)}")
        return substitution(present, like.dtype) if self.absent_tasks == "substitute" else None

    def sequence(self, losses: Tensor, **computed) -> Tensor:
        """The update as a sequence of optimizer steps, all computed at the same parameters: an
        (s, m) matrix whose row k gives step k's task weights (the sequential update protocol,
        ``GradientEngine.backward_sequence``). Default: one step, the answer of ``respond``.
        A weighting whose method takes several steps per batch (DGE's paper form) overrides it;
        its rows sum to what ``respond`` would have answered."""
        answer = self.respond(losses, **computed)
        if answer.dim() != 1 or answer.shape[0] != self.num_tasks:
            raise UserError(f"weighting {self.name!r} answers with per-block weights or a gradient; the "
                            f"sequential update needs task weights (use the summed update)")
        return answer[None]

    @classmethod
    def noop_reason(cls, num_tasks: int) -> str | None:
        """Why this method provably reduces to equal weighting with ``num_tasks`` tasks, or None.
        A domain whose study would report such a run as a method may refuse it."""
        return None

    def diagnostics(self) -> dict[str, Tensor]:
        """Scalars (0-d tensors, on the device) the engine logs with its diagnostics every
        ``diagnostics_every`` steps, e.g. equilibrium's residual ‖Σ_k w_k ŝ_k‖. Default: none."""
        return {}

    def follow(self, dtype: torch.dtype) -> None:
        """Keep every floating-point parameter and buffer in ``dtype`` (a no-op when they are)."""
        if dtype.is_floating_point and any(t.is_floating_point() and t.dtype != dtype
                                           for t in chain(self.parameters(), self.buffers())):
            self.to(dtype)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        """Adopt the saved precision of floating-point state before copying it, so a resumed run
        continues bit for bit whatever dtype the fresh weighting started in."""
        for table in (self._parameters, self._buffers):
            for name, tensor in table.items():
                saved = state_dict.get(prefix + name)
                if (tensor is not None and isinstance(saved, Tensor) and tensor.is_floating_point()
                        and saved.is_floating_point() and saved.dtype != tensor.dtype):
                    tensor.data = tensor.data.to(saved.dtype)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def aux_loss(self, losses: Tensor, **computed) -> Tensor | None:
        """A loss over the weighting's own parameters only (``losses`` and ``computed`` are detached)."""
        return None

    def epoch_end(self, mean_losses: Tensor) -> None:
        """Called with the epoch's mean training loss per task (DWA)."""

    def after_step(self, closure) -> None:
        """Called after the optimizer step; ``closure()`` re-evaluates ``{task: loss}`` on the
        same batch with the updated model, without gradients (FAMO)."""

    def equal(self, like: Tensor) -> Tensor:
        return torch.ones(self.num_tasks, dtype=like.dtype, device=like.device)
