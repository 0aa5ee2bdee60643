"""Deterministic batching (DESIGN.md §10): an epoch's sample order is a pure function of
(seed, epoch), so a resumed run skips to its batch index instead of replaying."""
from __future__ import annotations

from typing import Iterator, Mapping

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Subset


class TensorTaskDataset(Dataset):
    """Inputs and per-task targets held as tensors; batches are gathered with one index op.

    ``labelled``: for tasks whose labels some samples lack, a bool tensor (n,) True where the
    sample has the label (``mtl_platform.labels``); batches are then
    ``(inputs, targets, {task: labelled})``, else ``(inputs, targets)``."""

    def __init__(self, inputs: Tensor, targets: Mapping[str, Tensor], labelled: Mapping[str, Tensor] | None = None):
        n = len(inputs)
        for task, t in [*targets.items(), *(labelled or {}).items()]:
            if len(t) != n:
                raise ValueError(f"target {task!r} has {len(t)} rows, inputs have {n}")
        self.inputs = inputs
        self.targets = dict(targets)
        self.labelled = dict(labelled or {})

    def __len__(self) -> int:
        return len(self.inputs)

    def __getitem__(self, i):
        if self.labelled:
            return (self.inputs[i], {t: v[i] for t, v in self.targets.items()},
                    {t: v[i] for t, v in self.labelled.items()})
        return self.inputs[i], {t: v[i] for t, v in self.targets.items()}

    def get_batch(self, index: Tensor):
        if self.labelled:
            return (self.inputs[index], {t: v[index] for t, v in self.targets.items()},
                    {t: v[index] for t, v in self.labelled.items()})
        return self.inputs[index], {t: v[index] for t, v in self.targets.items()}


class BatchedSubset(Subset):
    """A ``Subset`` of a dataset with batched access that keeps it (one index op per batch)."""

    def __init__(self, dataset: Dataset, indices):
        super().__init__(dataset, indices)
        self.index = torch.as_tensor(indices, dtype=torch.long)

    def get_batch(self, index: Tensor):
        return self.dataset.get_batch(self.index[index])


class EpochSubset(Subset):
    """A ``Subset`` that passes ``set_epoch`` on to an augmenting dataset."""

    def set_epoch(self, epoch: int) -> None:
        self.dataset.set_epoch(epoch)


def subset(dataset: Dataset, indices) -> Subset:
    """``indices`` of ``dataset``, with batched access (or ``set_epoch``) where the dataset has it."""
    if hasattr(dataset, "get_batch"):
        return BatchedSubset(dataset, list(indices))
    return (EpochSubset if hasattr(dataset, "set_epoch") else Subset)(dataset, list(indices))


_MASK64 = (1 << 64) - 1


def _splitmix64(x: int) -> int:
    """One SplitMix64 step (Steele, Lea & Flood 2014) on a 64-bit integer."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def mix_seed(*values: int) -> int:
    """A 63-bit seed that depends on ``values`` (e.g. seed, epoch, sample index) only: SplitMix64
    folded over them — plain integer arithmetic, the same in every process (no ``hash``)."""
    h = 0
    for value in values:
        h = _splitmix64(h ^ (int(value) & _MASK64))
    return h >> 1


def epoch_order(n: int, seed: int, epoch: int) -> Tensor:
    """The permutation of ``range(n)`` used in ``epoch``: depends on (seed, epoch) only."""
    g = torch.Generator().manual_seed((int(seed) * 1_000_003 + int(epoch) * 7919 + 12345) % (2**63))
    return torch.randperm(n, generator=g)


def batch_indices(n: int, batch_size: int, *, shuffle: bool, seed: int = 0, epoch: int = 0,
                  drop_last: bool = False) -> list[Tensor]:
    order = epoch_order(n, seed, epoch) if shuffle else torch.arange(n)
    chunks = list(torch.split(order, batch_size))
    if drop_last and len(chunks) > 1 and len(chunks[-1]) < batch_size:
        chunks = chunks[:-1]
    return chunks


class Batches:
    """An iterable of batches over given index chunks, starting at ``start`` (resume)."""

    def __init__(self, dataset: Dataset, chunks: list[Tensor], start: int = 0, num_workers: int = 0):
        self.dataset = dataset
        self.chunks = chunks
        self.start = start
        self.num_workers = num_workers

    def __len__(self) -> int:
        return max(0, len(self.chunks) - self.start)

    def __iter__(self) -> Iterator:
        chunks = self.chunks[self.start:]
        if hasattr(self.dataset, "get_batch"):
            for idx in chunks:
                yield self.dataset.get_batch(idx)
            return
        loader = DataLoader(self.dataset, batch_sampler=[c.tolist() for c in chunks],
                            num_workers=self.num_workers)
        yield from loader


def to_device(obj, device: torch.device):
    """Move a (nested) batch to ``device``."""
    if isinstance(obj, Tensor):
        return obj.to(device, non_blocking=True)
    if isinstance(obj, Mapping):
        return {k: to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_device(v, device) for v in obj)
    return obj
