"""A replay buffer that holds every task's transitions apart and samples the same number from each."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from mtl_platform.atomic import atomic_write

FIELDS = ("obs", "action", "reward", "next_obs")


class BalancedReplay:
    """One ring buffer of ``capacity`` transitions per task, on ``device``.

    ``add`` stores one transition per task (the vectorised environments step every task at
    once, so the tasks fill at the same rate); ``sample(n)`` draws ``n`` indices per task,
    uniformly from that task's filled part, with torch's global generator (which checkpoints
    save), and returns tensors shaped (m, n, ...). No transition crosses tasks, so task t's
    losses are computed from task t's data only. There is no done flag: Meta-World episodes
    end only at the time limit, which is not a terminal state (SAC bootstraps through it).
    """

    def __init__(self, tasks: int, capacity: int, obs_dim: int, act_dim: int, device: torch.device):
        self.m, self.capacity = tasks, capacity
        shapes = {"obs": (obs_dim,), "action": (act_dim,), "reward": (), "next_obs": (obs_dim,)}
        self.data = {k: torch.zeros((tasks, capacity, *s), dtype=torch.float32, device=device)
                     for k, s in shapes.items()}
        self.added = 0  # transitions added per task (all tasks alike)

    def __len__(self) -> int:
        """Transitions held per task."""
        return min(self.added, self.capacity)

    def add(self, obs: Tensor, action: Tensor, reward: Tensor, next_obs: Tensor) -> None:
        i = self.added % self.capacity
        for key, value in zip(FIELDS, (obs, action, reward, next_obs)):
            self.data[key][:, i] = value
        self.added += 1

    def sample(self, n: int) -> dict[str, Tensor]:
        device = self.data["obs"].device
        idx = (torch.rand(self.m, n, device=device) * len(self)).long()  # uniform over the filled part
        rows = torch.arange(self.m, device=device)[:, None]
        return {k: v[rows, idx] for k, v in self.data.items()}

    # -- checkpoint ---------------------------------------------------------------------------
    def save(self, path: Path) -> None:
        """The filled part, compactly, as an ``.npz`` written atomically (temp, fsync, rename)."""
        n = len(self)
        arrays = {k: v[:, :n].cpu().numpy() for k, v in self.data.items()}
        arrays["added"] = np.array(self.added, dtype=np.int64)
        atomic_write(path, lambda fh: np.savez(fh, **arrays))

    def load(self, path: Path) -> None:
        with np.load(path) as f:
            self.added = int(f["added"])
            n = len(self)
            for k, v in self.data.items():
                v.zero_()
                v[:, :n] = torch.from_numpy(f[k]).to(v.device)
