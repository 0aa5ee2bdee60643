"""Endless, deterministic source and target streams for UDA training (DESIGN.md §10).

Sample k of a stream (k counted over the whole run) is element k mod N of the permutation
drawn for cycle k // N from (seed, stream, cycle): the order is a pure function of those, so
a resumed run starts at its batch index without replaying, and the two streams never share
an order. An epoch is ``iterations`` batches of each.
"""
from __future__ import annotations

import torch
from torch.utils.data import Dataset, default_collate

from mtl_platform.batches import epoch_order


def stream_indices(n: int, seed: int, stream: int, start: int, count: int) -> torch.Tensor:
    """Indices of samples start … start+count−1 of the stream over a dataset of n items."""
    k = torch.arange(start, start + count)
    cycles = k // n
    out = torch.empty(count, dtype=torch.long)
    for cycle in cycles.unique().tolist():
        mask = cycles == cycle
        out[mask] = epoch_order(n, seed * 7 + stream, int(cycle))[k[mask] % n]
    return out


def gather(data: Dataset, index: torch.Tensor):
    if hasattr(data, "get_batch"):
        return data.get_batch(index)
    return default_collate([data[i] for i in index.tolist()])


class PairedStreams:
    """``iterations`` batches ``(x_s, y_s, x_t, progress)`` of one epoch from ``start``;
    ``progress`` = global iteration / ``schedule`` (clamped to 1) for the methods' schedules."""

    def __init__(self, source: Dataset, target: Dataset, batch_size: int, iterations: int, epoch: int,
                 start: int, seed: int, schedule: int):
        self.source, self.target = source, target
        self.batch_size, self.iterations, self.epoch = batch_size, iterations, epoch
        self.start, self.seed, self.schedule = start, seed, schedule

    def __len__(self) -> int:
        return max(0, self.iterations - self.start)

    def __iter__(self):
        b = self.batch_size
        for data in (self.source, self.target):
            if hasattr(data, "set_epoch"):
                data.set_epoch(self.epoch)
        for i in range(self.start, self.iterations):
            step = self.epoch * self.iterations + i
            xs, ys = gather(self.source, stream_indices(len(self.source), self.seed, 1, step * b, b))
            xt, _ = gather(self.target, stream_indices(len(self.target), self.seed, 2, step * b, b))
            yield xs, ys, xt, torch.tensor(min(1.0, step / max(1, self.schedule)))
