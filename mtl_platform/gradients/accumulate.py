"""The task Gramian G = J Jᵀ of a model's shared parameters, without the m × P Jacobian
(issue 16; the idea of TorchJD's ``autogram``, Algorithm 3 of Quinton & Rey, "Jacobian Descent
for Multi-Objective Optimization", 2024, here over tasks instead of samples).

J's columns split by the module that owns each parameter: G = Σ_k J_k J_kᵀ, where J_k holds
the m task gradients of module k's own parameters. Forward hooks keep the input and the output
of every call of such a module. Then:

1. per task t, one backward pass of L_t down to those outputs only gives U_t = ∂L_t/∂y for
   every call (autograd skips the parameters' own gradients: nothing asks for them);
2. per module, its block of G: for a linear or convolution layer in closed form from its
   inputs X and the U_t (∇_W L_t = U_tᵀ X, for a convolution through its own weight-gradient
   kernel rather than an unfolded X; with fewer positions than weights, through the
   R × R kernel X Xᵀ without forming the gradients); for a batch norm from its normalised
   input x̂ (∇_γ L_t = Σ U_t ∘ x̂, ∇_β L_t = Σ U_t); for any other module, J_k by local
   backward passes from its output to its own parameters, freed once its Gramian is added;
3. after the weighting has answered with weights w (or per-block weights), the combined
   gradient Σ_t w_t ∇L_t of each module from Σ_t w_t U_t, the same way.

What is held: m × (the modules' outputs) and, one module at a time, at most m × P_k, instead
of m × P. The backward passes are the floor's (one per task), split in two halves.

The one assumption: a module's own parameters are used only inside its own ``forward`` (true
of torch.nn's layers and of every built-in architecture; ``tests/core/gradients/test_gramian_accumulation.py``
checks G against J Jᵀ for each). Parameters that break it visibly — owned by two modules
(tied), of a module whose output is not one tensor, or of a module not called through
``__call__`` in this step — are handled exactly, as columns of an explicit Jacobian.
"""
from __future__ import annotations

import weakref
from typing import Sequence

import torch
from torch import Tensor, nn
from torch.nn.grad import conv2d_weight

from .combine import gramian, working_dtype
from .jacobian import _write_row


class _Unit:
    """A module that owns shared parameters directly, and the outputs of its calls this step."""

    __slots__ = ("module", "params", "blocks", "calls", "whole", "kernel", "norm")

    def __init__(self, module: nn.Module, params: list[Tensor], blocks: list[int]):
        self.module = module
        self.params = params
        self.blocks = blocks  # the parameter block of each parameter
        self.calls: list[tuple[Tensor, Tensor]] = []  # (input, output) of each call
        self.whole = True  # False once a call returned something other than one tensor
        self.kernel = _has_kernel(module) and all(
            any(p is q for q in (module.weight, module.bias)) for p in params)
        self.norm = _is_batch_norm(module) and all(any(p is q for q in (module.weight, module.bias)) for p in params)


class GramianAccumulator:
    """Per-module accumulation of the task Gramian over ``space`` (see the module docstring)."""

    def __init__(self, model: nn.Module, blocks: Sequence[Sequence[Tensor]]):
        """``blocks``: the gradient space as parameter blocks (one block: the plain Gramian)."""
        blocks = [[p for p in b if p.requires_grad] for b in blocks]
        blocks = [b for b in blocks if b]
        self.space = [p for b in blocks for p in b]
        block_of = {id(p): i for i, b in enumerate(blocks) for p in b}
        self.n_blocks = max(len(blocks), 1)
        in_space = {id(p) for p in self.space}
        owners: dict[int, int] = {}
        for module in model.modules():
            for p in module.parameters(recurse=False):
                owners[id(p)] = owners.get(id(p), 0) + 1
        self.units: list[_Unit] = []
        self.handles = []
        owned: set[int] = set()
        for module in model.modules():
            mine = [p for p in module.parameters(recurse=False)
                    if id(p) in in_space and owners[id(p)] == 1 and id(p) not in owned]
            if mine:
                unit = _Unit(module, mine, [block_of.get(id(p), 0) for p in mine])
                owned.update(id(p) for p in mine)
                self.units.append(unit)
                self.handles.append(module.register_forward_hook(self._recorder(unit)))
        self.tied = [p for p in self.space if id(p) not in owned]

    def _recorder(self, unit: _Unit):
        owner = weakref.ref(self)  # a discarded engine's hooks fall silent (and keep nothing alive)

        def hook(module, args, output):
            this = owner()
            if this is None or not torch.is_grad_enabled() or module is not unit.module:
                return  # (a deep copy of the model carries the hook along: not ours)
            if isinstance(output, Tensor):
                if output.requires_grad:
                    unit.calls.append((args[0] if args and isinstance(args[0], Tensor) else None, output))
            else:
                unit.whole = False
        return hook

    def closed_form_share(self) -> float:
        """The share of the space's parameters in layers with a closed form (linear,
        convolution, batch norm): where accumulating costs least."""
        total = sum(p.numel() for p in self.space)
        closed = sum(p.numel() for u in self.units if u.kernel or u.norm for p in u.params)
        return closed / total if total else 0.0

    def close(self) -> None:
        """Remove the forward hooks (the engine went back to the Jacobian path)."""
        for handle in self.handles:
            handle.remove()
        self.handles = []
        self.clear()

    def clear(self) -> None:
        for unit in self.units:
            unit.calls = []

    def _block_gram(self, grams: Tensor, jac: Tensor, blocks: Sequence[int], sizes: Sequence[int],
                    precision: str) -> None:
        offset = 0
        for b, n in zip(blocks, sizes):
            grams[b] += gramian(jac[:, offset:offset + n], precision)
            offset += n

    def _closed_form(self, unit: _Unit) -> bool:
        """Whether the unit's task gradients have the closed form U_tᵀ X this step (a linear or
        convolution layer whose every call saw one 4-D / N-D input)."""
        return unit.kernel and all(x is not None and (x.dim() == 4 or not _is_conv(unit.module))
                                   for x, _ in unit.calls)

    @staticmethod
    def _norm_form(unit: _Unit) -> bool:
        """A batch-norm layer whose every call saw one tensor: ∇_γ L_t = Σ U_t ∘ x̂, ∇_β L_t = Σ U_t."""
        return unit.norm and all(x is not None for x, _ in unit.calls)

    def _usable(self, unit: _Unit) -> bool:
        """Accumulated this step: called, one tensor out, and either a closed form or a single
        call (a local backward from the output of a second call would run on into the first
        call's use of the same parameters)."""
        return bool(unit.calls) and unit.whole and (len(unit.calls) == 1 or self._closed_form(unit)
                                                     or self._norm_form(unit))

    def _plan(self, unit: _Unit) -> str:
        """How the unit's part is formed, choosing what is smallest to keep per task:
        ``norm`` (γ, β gradients), ``rows`` (the weight gradients U_tᵀ X, where there are at
        least as many positions R as parameters: R² ≥ P), ``kernel`` (the output gradients U_t,
        where R² < P: through X Xᵀ), ``local`` (the output gradients, then local backward passes)."""
        if self._norm_form(unit):
            return "norm"
        if self._closed_form(unit):
            positions = sum(_positions(unit.module, x) for x, _ in unit.calls)
            return "kernel" if positions ** 2 < unit.module.weight.numel() else "rows"
        return "local"

    @staticmethod
    def _normalised(module: nn.Module, x: Tensor) -> Tensor:
        """x̂ with the statistics the forward used (the batch's in training, else the running ones)."""
        x = x.detach()
        if module.training or not module.track_running_stats:
            return torch.nn.functional.batch_norm(x, None, None, None, None, True, 0.0, module.eps)
        return torch.nn.functional.batch_norm(x, module.running_mean, module.running_var, None, None, False, 0.0,
                                              module.eps)

    def compute(self, losses: Tensor, others: Sequence[Tensor], precision: str = "float64",
                amp: Tensor | None = None, terms: Sequence[Tensor] | None = None):
        """Per-block Gramians (n_blocks, m, m) of the true losses over the space. The parameters
        outside the space (``others``) and the space's parameters that cannot be accumulated
        this step get explicit Jacobian rows. ``terms``: the scalars ``losses`` was stacked from
        (each task's pass then visits only its own graph). Returns ``(grams, state)`` for ``apply``."""
        m = losses.shape[0]
        scaled = list(losses.unbind()) if terms is None else list(terms)
        if amp is not None:
            scaled = [t * amp for t in scaled]
        live = [u for u in self.units if self._usable(u)]
        explicit = [p for u in self.units if not self._usable(u) for p in u.params] + self.tied
        rows_params = explicit + list(others)
        sizes = [p.numel() for p in rows_params]
        dtype = self.space[0].dtype if self.space else losses.dtype
        device = losses.device
        buffer = torch.empty(m, sum(sizes), dtype=dtype, device=device)  # small: heads and explicit columns
        # what each unit keeps per task, allocated before the backward passes
        plans, kept, context, outputs = {}, {}, {}, []
        with torch.no_grad():
            for unit in live:
                plan = plans[id(unit)] = self._plan(unit)
                module = unit.module
                if plan == "norm":
                    context[id(unit)] = [self._normalised(module, x).to(dtype) for x, _ in unit.calls]
                    channels = module.weight.numel()
                    kept[id(unit)] = (torch.zeros(m, channels, dtype=dtype, device=device),
                                      torch.zeros(m, channels, dtype=dtype, device=device))
                elif plan == "rows":  # a convolution keeps its input, a linear layer its input rows
                    context[id(unit)] = [(x.detach() if _is_conv(module) else _input_rows(module, x.detach())).to(dtype)
                                         for x, _ in unit.calls]
                    kept[id(unit)] = (torch.zeros(m, module.weight.numel(), dtype=dtype, device=device),
                                      torch.zeros(m, module.out_channels if _is_conv(module) else module.out_features,
                                                  dtype=dtype, device=device))
                else:
                    kept[id(unit)] = [torch.zeros((m, *y.shape), dtype=y.dtype, device=y.device) for _, y in unit.calls]
                outputs += [(unit, c, y) for c, (_, y) in enumerate(unit.calls)]
        inputs = [y for _, _, y in outputs] + rows_params
        for t in range(m):  # the floor's backward passes, down to the modules' outputs only
            grads = torch.autograd.grad(scaled[t], inputs, retain_graph=True, allow_unused=True)
            with torch.no_grad():
                for (unit, c, _), g in zip(outputs, grads[:len(outputs)]):
                    if g is not None:
                        self._keep(plans[id(unit)], unit, kept[id(unit)], context.get(id(unit)), c, t, g)
            _write_row(buffer[t], grads[len(outputs):], sizes)
        if amp is not None:
            for unit in live:
                for part in kept[id(unit)]:
                    part.div_(amp)
            buffer.div_(amp)
        work = dtype if precision == "native" else working_dtype(buffer)
        grams = torch.zeros(self.n_blocks, m, m, dtype=work, device=device)
        factors = {}
        with torch.no_grad():
            for unit in live:
                plan, part = plans[id(unit)], kept[id(unit)]
                if plan in ("norm", "rows"):
                    for p, b in zip(unit.params, unit.blocks):
                        g = part[0] if p is unit.module.weight else part[1]
                        grams[b] += gramian(g, precision).to(work)
                    factors[id(unit)] = part
                elif plan == "kernel":
                    factors[id(unit)] = self._kernel_gram(grams, unit, part, work)
                else:
                    with torch.enable_grad():
                        self._local_gram(grams, unit, unit.calls[0][1], part[0], precision)
                    factors[id(unit)] = part
            block_of = {id(p): b for u in self.units for p, b in zip(u.params, u.blocks)}
            explicit_blocks = [block_of.get(id(p), 0) for p in explicit]
            n_explicit = sum(p.numel() for p in explicit)
            self._block_gram(grams, buffer[:, :n_explicit], explicit_blocks, [p.numel() for p in explicit], precision)
        state = {"live": live, "plans": plans, "factors": factors, "explicit": explicit,
                 "explicit_blocks": explicit_blocks, "others": list(others), "buffer": buffer,
                 "n_explicit": n_explicit}
        return grams, state

    @staticmethod
    def _keep(plan: str, unit: _Unit, part, context, call: int, t: int, g: Tensor) -> None:
        """Fold task t's output gradient g of one call into what the unit keeps."""
        module = unit.module
        if plan in ("norm", "rows"):
            g = g.to(part[0].dtype)  # under autocast the output gradient may be half precision
        if plan == "norm":
            dims = [0, *range(2, g.dim())]
            part[0][t] += (g * context[call]).sum(dims)
            part[1][t] += g.sum(dims)
        elif plan == "rows" and _is_conv(module):  # the convolution's own weight-gradient kernel, no im2col
            part[0][t] += conv2d_weight(context[call], module.weight.shape, g, module.stride, module.padding,
                                        module.dilation, module.groups).reshape(-1)
            part[1][t] += g.sum((0, 2, 3))
        elif plan == "rows":
            u = _output_rows(module, g[None])[0]                         # (R, out)
            part[0][t] += (u.T @ context[call]).reshape(-1)
            part[1][t] += u.sum(0)
        else:
            part[call][t].copy_(g)

    def _kernel_gram(self, grams: Tensor, unit: _Unit, upstream: Sequence[Tensor], work) -> tuple[Tensor, Tensor]:
        """A linear or convolution layer with fewer positions R than weights (R² < P): with X the
        (unfolded) input rows and U_t the output-gradient rows, ∇_W L_t = U_tᵀ X and
        ∇_b L_t = U_tᵀ 1, so ⟨∇_W L_s, ∇_W L_t⟩ = Σ_{r,r'} (X Xᵀ)_{rr'} (U_s U_tᵀ)_{rr'} — through
        the R × R kernel, without forming the gradients. Returns (X, U) for the update."""
        rows = torch.cat([_input_rows(unit.module, x.detach()).to(work) for x, _ in unit.calls])  # (R, fan_in)
        grad_rows = torch.cat([_output_rows(unit.module, up).to(work) for up in upstream], dim=1)  # (m, R, out)
        x, u = rows, grad_rows
        weight_gram = torch.einsum("sro,tro->st", u, torch.matmul(x @ x.T, u))
        summed = u.sum(1)
        bias_gram = summed @ summed.T
        for p, b in zip(unit.params, unit.blocks):
            grams[b] += weight_gram if p is unit.module.weight else bias_gram
        return rows, grad_rows

    def _local_gram(self, grams: Tensor, unit: _Unit, output: Tensor, upstream: Tensor, precision: str) -> None:
        """Any other single-call module: J_k row by row by local backward passes from its output
        to its own parameters, then its Gramian; J_k is freed."""
        m = upstream.shape[0]
        sizes = [p.numel() for p in unit.params]
        jac = torch.zeros(m, sum(sizes), dtype=unit.params[0].dtype, device=upstream.device)
        for t in range(m):
            grads = torch.autograd.grad(output, unit.params, upstream[t], retain_graph=True, allow_unused=True)
            _write_row(jac[t], grads, sizes)
        self._block_gram(grams, jac, unit.blocks, sizes, precision)

    def apply(self, state: dict, block_weights: Tensor, coeff: Tensor, scale, add_grad) -> None:
        """Add the combined gradient (block b's parameters: ``block_weights[b]ᵀ J``) to the space
        and ``coeffᵀ J`` to the other parameters, each times ``scale``."""
        for unit in state["live"]:
            plan, part = state["plans"][id(unit)], state["factors"][id(unit)]
            for b in sorted(set(unit.blocks)):
                params = [p for p, pb in zip(unit.params, unit.blocks) if pb == b]
                if plan in ("norm", "rows", "kernel"):
                    with torch.no_grad():
                        if plan == "kernel":
                            rows, grad_rows = part
                            direction = torch.tensordot(block_weights[b].to(grad_rows.dtype), grad_rows, dims=1)
                            weight, bias = direction.T @ rows, direction.sum(0)
                        else:
                            w = block_weights[b].to(part[0].dtype)
                            weight, bias = w @ part[0], w @ part[1]
                        for p in params:
                            g = weight if p is unit.module.weight else bias
                            add_grad(p, (g * scale).reshape(p.shape))
                else:
                    direction = torch.tensordot(block_weights[b].to(part[0].dtype), part[0], dims=1) * scale
                    grads = torch.autograd.grad(unit.calls[0][1], params, direction, retain_graph=True,
                                                allow_unused=True)
                    for p, g in zip(params, grads):
                        if g is not None:
                            add_grad(p, g)
        buffer, n_explicit = state["buffer"], state["n_explicit"]
        offset = 0
        for p, b in zip(state["explicit"], state["explicit_blocks"]):
            n = p.numel()
            add_grad(p, (block_weights[b].to(buffer.dtype) @ buffer[:, offset:offset + n]) * scale)
            offset += n
        rest = buffer[:, n_explicit:]
        offset = 0
        for p in state["others"]:
            n = p.numel()
            add_grad(p, (coeff.to(buffer.dtype) @ rest[:, offset:offset + n]) * scale)
            offset += n
        self.clear()

def _is_batch_norm(module: nn.Module) -> bool:
    return isinstance(module, nn.modules.batchnorm._BatchNorm) and module.affine


def _is_conv(module: nn.Module) -> bool:
    return isinstance(module, nn.Conv2d)


def _has_kernel(module: nn.Module) -> bool:
    """Layers whose task-gradient Gramian has the closed form of ``_kernel_gram``."""
    if type(module) is nn.Linear:
        return True
    return (type(module) is nn.Conv2d and module.groups == 1 and module.padding_mode == "zeros"
            and not isinstance(module.padding, str))


def _input_rows(module: nn.Module, x: Tensor) -> Tensor:
    """The layer's input as rows that the weight multiplies: (R, fan_in)."""
    if _is_conv(module):
        cols = torch.nn.functional.unfold(x, module.kernel_size, module.dilation, module.padding, module.stride)
        return cols.transpose(1, 2).reshape(-1, cols.shape[1])
    return x.reshape(-1, x.shape[-1])


def _output_rows(module: nn.Module, up: Tensor) -> Tensor:
    """Output gradients of m tasks as rows matching ``_input_rows``: (m, R, out)."""
    m = up.shape[0]
    if _is_conv(module):
        return up.reshape(m, up.shape[1], up.shape[2], -1).transpose(2, 3).reshape(m, -1, up.shape[2])
    return up.reshape(m, -1, up.shape[-1])


def _positions(module: nn.Module, x: Tensor) -> int:
    """R: the rows of ``_input_rows`` (batch × output positions)."""
    if _is_conv(module):
        h, w = x.shape[-2:]
        out = [(size + 2 * pad - dil * (k - 1) - 1) // st + 1 for size, pad, dil, k, st in
               zip((h, w), module.padding, module.dilation, module.kernel_size, module.stride)]
        return x.shape[0] * out[0] * out[1]
    return x.numel() // x.shape[-1]
