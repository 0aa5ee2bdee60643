"""Which MultiMNIST training images keep each task's label (partial labels, issue 20)."""
from __future__ import annotations

import zlib

import numpy as np
import torch


def kept_labels(n: int, fraction: float, seed: int, task: str) -> torch.Tensor:
    """A bool mask (n,): True for the ``round(fraction · n)`` samples that keep ``task``'s label.

    Sample i gets the key u_i, the i-th draw of a generator seeded by (seed, task) (numpy's
    PCG64: u_i does not depend on n), and the samples with the smallest keys keep their label.
    So the choice is a pure function of (seed, task, sample index) and the set's size: the
    same in every run and after a resume, independent from task to task, different per seed.
    """
    rng = np.random.default_rng([int(seed), zlib.crc32(task.encode()), 0x9A27])
    keys = rng.random(n)
    kept = np.zeros(n, dtype=bool)
    kept[np.argsort(keys, kind="stable")[:int(round(fraction * n))]] = True
    return torch.from_numpy(kept)
