"""SSRT's safe training (Sun et al., CVPR 2022, §3.3, Fig. 3; as the authors' code runs it).

The self-refinement strength r ∈ [0, 1] scales both the perturbation and the loss weight. It
ramps up as r(i) = sin((i − φ)/P · π/2) for φ ≤ i < φ + P and stays 1 after (φ the phase, P
the period, first 0 and T). Every T iterations a snapshot of the model is taken. Within the
interval the diversity of the target predictions — the number of distinct predicted classes
in the batch — is recorded per iteration; at the interval's end it is averaged over 2^l equal
chunks for l = 0 … L (with the previous interval's last chunk in front), and a drop of more
than 1 class between two consecutive chunks, while r > 0.1, is a collapse: the model is set
back to the snapshot, the ramp restarts (φ = now), and P doubles if the last restart was at
most P iterations ago.

The published code takes its snapshot with ``state_dict()``, whose tensors share storage with
the live parameters, so its "restore" leaves the weights as they are and only the ramp
restarts; ``restore_weights: false`` reproduces that. The state lives in buffers (checkpointed
with the model); the snapshot itself is kept in memory only, so a run resumed in the middle of
an interval takes a fresh one at its first step.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

DROP = 1.0        # classes: a drop larger than this between consecutive chunks is a collapse
MIN_STRENGTH = 0.1  # no collapse is declared while r ≤ this


def chunk_means(values: list[float], chunks: int) -> list[float]:
    """Means of ``values`` split into ``chunks`` nearly equal consecutive parts (the first ones
    one longer, as numpy's ``array_split``); empty parts are left out."""
    n = len(values)
    size, extra = divmod(n, chunks)
    out, start = [], 0
    for k in range(chunks):
        end = start + size + (1 if k < extra else 0)
        if end > start:
            out.append(sum(values[start:end]) / (end - start))
        start = end
    return out


def diversity_dropped(divs: list[float], last: list[float] | None, scales: int) -> bool:
    """Whether the chunk means of ``divs`` fall by more than ``DROP`` between two consecutive
    chunks at any scale 2^0 … 2^scales (the previous interval's last chunk, if given, in front)."""
    for level in range(scales + 1):
        means = chunk_means(divs, 2 ** level)
        if last is not None:
            means = chunk_means(last, 2 ** level)[-1:] + means
        if any(b < a - DROP for a, b in zip(means, means[1:])):
            return True
    return False


class SafeTraining(nn.Module):
    """The state of safe training: buffers ``iteration``, ``phase`` φ, ``period`` P,
    ``last_restore``, ``pending`` (a restore is due), ``divs`` (this interval's diversities)
    and ``last_divs``/``has_last`` (the previous interval's). The Python mirror is read from
    the buffers once (the one host read of a run); ``divs`` is read once per interval."""

    def __init__(self, interval: int, scales: int, append_last: bool = True, restore_weights: bool = True):
        super().__init__()
        self.interval, self.scales = int(interval), int(scales)
        self.append_last, self.restore_weights = append_last, restore_weights
        for name, value in (("iteration", 0), ("phase", 0), ("period", interval), ("last_restore", 0),
                            ("pending", 0), ("has_last", 0)):
            self.register_buffer(name, torch.tensor(value, dtype=torch.long))
        self.register_buffer("divs", torch.zeros(interval))
        self.register_buffer("last_divs", torch.zeros(interval))
        self._host: dict | None = None
        self._snapshot: dict | None = None
        self.restores = 0  # restores done by this process (for tests and logs)

    def host(self) -> dict:
        if self._host is None:
            names = ("iteration", "phase", "period", "last_restore", "pending", "has_last")
            self._host = dict(zip(names, torch.stack([getattr(self, n) for n in names]).tolist()))
        return self._host

    def _set(self, **values) -> None:
        for name, value in values.items():
            self.host()[name] = int(value)
            getattr(self, name).fill_(int(value))

    def strength(self, iteration: int) -> float:
        """r(i): the sine ramp from the phase over the period, 1 after it."""
        h = self.host()
        if iteration >= h["phase"] + h["period"]:
            return 1.0
        return math.sin((iteration - h["phase"]) / h["period"] * math.pi / 2)

    def _own(self) -> set[int]:
        return {id(b) for b in self.buffers()}

    def _tensors(self, model: nn.Module):
        own = self._own()
        for name, t in [*model.named_parameters(), *model.named_buffers()]:
            if id(t) not in own:
                yield name, t

    @torch.no_grad()
    def begin(self, model: nn.Module) -> bool:
        """At the start of an iteration: restore the snapshot if a collapse was found, and take
        a new one at the start of each interval. Returns whether it restored."""
        h = self.host()
        i = h["iteration"]
        restored = False
        if h["pending"] and i > 0:
            if self._snapshot is not None and self.restore_weights:
                for name, t in self._tensors(model):
                    t.copy_(self._snapshot[name])
            self._set(pending=0, last_restore=i)
            self.restores += 1
            restored = True
        if i % self.interval == 0 or self._snapshot is None:
            self._snapshot = {name: t.detach().clone() for name, t in self._tensors(model)}
        return restored

    @torch.no_grad()
    def end(self, diversity: Tensor | None) -> None:
        """At the end of an iteration: record its diversity; at the end of an interval look for
        a collapse; count the iteration."""
        h = self.host()
        i = h["iteration"]
        if diversity is not None:
            self.divs[i % self.interval] = diversity
        if diversity is not None and (i + 1) % self.interval == 0 and i > 0:
            divs = self.divs.tolist()  # once per interval
            last = self.last_divs.tolist() if (self.append_last and h["has_last"]) else None
            if diversity_dropped(divs, last, self.scales) and self.strength(i) > MIN_STRENGTH:
                period = h["period"] * 2 if i - h["last_restore"] <= h["period"] else h["period"]
                self._set(pending=1, phase=i, period=period)
            else:
                self.last_divs.copy_(self.divs)
                self._set(has_last=1)
        self._set(iteration=i + 1)
