"""Carving a held-out part of a split, deterministically (our ``val`` from the benchmarks' training data)."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from mtl_platform.errors import UserError


def carve(n: int, fraction: float, seed: int | Sequence[int], key: str = "domain.data.val_fraction",
          what: str = "samples") -> tuple[list[int], list[int]]:
    """(kept, held_out) positions of ``range(n)``: ``round(n * fraction)`` (at least one when
    ``fraction > 0``) held out by a ``numpy`` permutation seeded with ``seed`` (an int, or a
    sequence of ints for a stream independent of the int's); both sorted. ``key`` and ``what``
    (the items counted) name them in the error when none would be left to train on."""
    if not 0.0 <= fraction < 1.0:
        raise UserError(f"{key}: got {fraction}, expected a number in [0, 1)")
    k = int(round(n * fraction))
    if fraction > 0:
        k = max(k, 1)
    if n - k < 1:
        raise UserError(f"{key}: {fraction} of {n} {what} leaves none to train on")
    order = np.random.default_rng([int(s) for s in seed] if isinstance(seed, (list, tuple)) else int(seed)).permutation(n)
    return sorted(int(i) for i in order[k:]), sorted(int(i) for i in order[:k])
