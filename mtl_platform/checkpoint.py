"""Atomic checkpoints that resume bit-for-bit (DESIGN.md §10).

Files are written to a temporary sibling, fsynced and renamed, so a crash never leaves a
half-written checkpoint. Everything in one round-trips through
``torch.load(weights_only=True)``: RNG states are stored as tensors.
"""
from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import torch

from .atomic import atomic_write


def atomic_save(obj, path: Path) -> None:
    """``torch.save`` made atomic: temp file, fsync, rename."""
    atomic_write(path, lambda fh: torch.save(obj, fh))


def load(path: Path, map_location="cpu") -> dict:
    return torch.load(path, map_location=map_location, weights_only=True)


def rng_state() -> dict:
    """Python, numpy, torch (and CUDA) RNG states, as tensors and plain values."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": {"version": version, "state": torch.tensor(internal, dtype=torch.int64),
                   "gauss": gauss},
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    py = state["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["state"].tolist()), py["gauss"]))
    npy = state["numpy"]
    np.random.set_state((npy["kind"], npy["keys"].numpy().astype(np.uint32), npy["pos"],
                         npy["has_gauss"], npy["cached"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int, deterministic: bool = False) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True


def last_checkpoint(run_dir: Path) -> dict | None:
    """Where ``mtl train --resume run_dir`` would continue: the newest ``checkpoint.pt`` of the
    run (its own, or the running stage's under ``stages/``) as ``{path, stage, epoch, batch,
    step}``, or None when none was written. Read memory-mapped, so the tensors stay on disk."""
    run_dir = Path(run_dir)
    found = [p for p in [run_dir / "checkpoint.pt", *run_dir.glob("stages/*/checkpoint.pt")] if p.is_file()]
    if not found:
        return None
    path = max(found, key=lambda p: p.stat().st_mtime)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - an unreadable file is reported as absent, never raised
        return None
    return {"path": path, **{k: state.get(k) for k in ("stage", "epoch", "batch", "step")}}
