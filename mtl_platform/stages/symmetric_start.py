"""A symmetric start for searched supernets: every task's copy begins from the same weights.

The thesis initialises f_S and every copy in h_t from the same (ImageNet) weights as HPS
(Yue, PhD thesis 2023, §5.3.2; spec thesis.md §3.2). Without pretrained weights the
analogue is to copy f_S's fresh initialisation into each h_t. Heads of equal shapes start
equal too: then, at the first step, the tasks' gradients on a shared module differ only
through their targets, so CoNAL's cosine test (Eq. 5.3) measures task relatedness rather
than the signs of independently drawn heads — with independent heads even identical tasks
conflict on about half the batches (measured in bench/conal_branching.py).
"""
from __future__ import annotations

from typing import Iterable

from torch import nn

from ..params import Param

SYMMETRIC_INIT = Param("symmetric_init", bool, True, "start every task's private encoder copy from the shared "
                       "encoder's weights and every head from the first task's (where shapes match), so that "
                       "early gradient conflicts reflect the tasks, not the random init")


def _same_shapes(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(a[k].shape == b[k].shape for k in a)


def copy_weights(source: nn.Module, copies: Iterable[nn.Module]) -> int:
    """Load ``source``'s state (parameters and buffers) into each copy whose state has the same
    names and shapes; returns how many were loaded. Copies are independent tensors."""
    state = source.state_dict()
    loaded = 0
    for copy in copies:
        if copy is not source and _same_shapes(copy.state_dict(), state):
            copy.load_state_dict(state)
            loaded += 1
    return loaded
