"""Endless, deterministic source and target streams for UDA training (DESIGN.md §10).

Sample k of a stream (k counted over the whole run) is element k mod N of the permutation
drawn for cycle k // N from (seed, stream, cycle): the order is a pure function of those, so
a resumed run starts at its batch index without replaying, and the two streams never share
an order. An epoch is ``iterations`` batches of each.

Multi-source UDA with separate sources (``MultiSourceStreams``): one stream per source, the
first exactly the single-source stream, the others seeded apart (``mix_seed``).
"""
from __future__ import annotations

import bisect

import torch
from torch.utils.data import Dataset, default_collate

from mtl_platform.batches import epoch_order, mix_seed


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


class Merged(Dataset):
    """Several datasets one after the other (the sources of "source-combined" UDA), with a
    batched ``get_batch`` where every part has one (the digit tensors)."""

    def __init__(self, parts: list[Dataset]):
        self.parts = list(parts)
        self.offsets = torch.tensor([0] + [len(p) for p in self.parts]).cumsum(0)

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def locate(self, index: torch.Tensor) -> torch.Tensor:
        """Which part each global index falls in."""
        return torch.bucketize(index, self.offsets[1:], right=True)

    def __getitem__(self, i: int):
        part = bisect.bisect_right(self.offsets.tolist(), i) - 1
        return self.parts[part][i - int(self.offsets[part])]

    def set_epoch(self, epoch: int) -> None:
        for p in self.parts:
            if hasattr(p, "set_epoch"):
                p.set_epoch(epoch)

    def get_batch(self, index: torch.Tensor):
        if not all(hasattr(p, "get_batch") for p in self.parts):
            return default_collate([self[i] for i in index.tolist()])
        part = self.locate(index)
        xs, ys = None, None
        for k in part.unique().tolist():
            mask = part == k
            x, y = self.parts[k].get_batch(index[mask] - self.offsets[k])
            if xs is None:
                xs = x.new_empty((len(index), *x.shape[1:]))
                ys = y.new_empty((len(index), *y.shape[1:]))
            xs[mask], ys[mask] = x, y
        return xs, ys


def source_batch(data: Dataset, seed: int, source: int, step: int, b: int):
    """Batch ``step`` of source ``source``'s stream: source 0 is the single-source stream (1)."""
    seed = seed if source == 0 else mix_seed(seed, source)
    return gather(data, stream_indices(len(data), seed, 1, step * b, b))


class PairedStreams:
    """``iterations`` batches ``(x_s, y_s, x_t, progress)`` of one epoch from ``start``;
    ``progress`` = global iteration / ``schedule`` (clamped to 1) for the methods' schedules.
    With ``target_index`` each batch also ends with the target samples' dataset indices (for
    pseudo-labels computed once, offline)."""

    def __init__(self, source: Dataset, target: Dataset, batch_size: int, iterations: int, epoch: int,
                 start: int, seed: int, schedule: int, target_index: bool = False):
        self.source, self.target = source, target
        self.batch_size, self.iterations, self.epoch = batch_size, iterations, epoch
        self.start, self.seed, self.schedule = start, seed, schedule
        self.target_index = target_index

    def __len__(self) -> int:
        return max(0, self.iterations - self.start)

    def __iter__(self):
        b = self.batch_size
        for data in (*self.sources(), self.target):
            if hasattr(data, "set_epoch"):
                data.set_epoch(self.epoch)
        for i in range(self.start, self.iterations):
            step = self.epoch * self.iterations + i
            xs, ys = self.source_batches(step)
            it = stream_indices(len(self.target), self.seed, 2, step * b, b)
            xt, _ = gather(self.target, it)  # the target's labels are never read
            progress = torch.tensor(min(1.0, step / max(1, self.schedule)))
            yield (xs, ys, xt, progress, it) if self.target_index else (xs, ys, xt, progress)

    def sources(self) -> list[Dataset]:
        return [self.source]

    def source_batches(self, step: int):
        return source_batch(self.source, self.seed, 0, step, self.batch_size)


class MultiSourceStreams(PairedStreams):
    """Separate sources: each batch is ``((x_s1, …), (y_s1, …), x_t, progress[, target index])``,
    ``batch_size`` samples of every source (each its own endless stream) and of the target."""

    def __init__(self, sources: list[Dataset], target: Dataset, *args, **kwargs):
        super().__init__(sources[0], target, *args, **kwargs)
        self.all_sources = list(sources)

    def sources(self) -> list[Dataset]:
        return self.all_sources

    def source_batches(self, step: int):
        pairs = [source_batch(d, self.seed, k, step, self.batch_size) for k, d in enumerate(self.all_sources)]
        return tuple(x for x, _ in pairs), tuple(y for _, y in pairs)
