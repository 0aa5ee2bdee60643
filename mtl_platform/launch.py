"""``mtl train --nproc N``: launch the same command under ``torchrun`` on this machine
(DESIGN.md §3.7, issue 20; docs/distributed.md).

Before anything starts, the parent checks in one line each what would otherwise fail in every
process at once: the config (or the run directory to resume), N against what the machine
has (its usable CPU cores for ``gloo``, its GPUs for ``nccl``) and, on ``--resume``, N against
the number of processes the run was trained with. Then it runs
``python -m torch.distributed.run --standalone --nproc-per-node N -m mtl_platform.cli train …``
and returns its exit status. Several machines: run ``torchrun`` yourself with a rendezvous
(docs/distributed.md).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from .errors import UserError


def capacity(device: str) -> tuple[int, str]:
    """How many processes this machine can run for ``train.device`` and what limits them."""
    import torch

    if device in ("auto", "cuda") and torch.cuda.is_available():
        return torch.cuda.device_count(), "GPUs (nccl)"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return cores, "CPU cores (gloo)"


def saved_world(run_dir: Path) -> int | None:
    """The number of processes the run in ``run_dir`` was trained with (None: no checkpoint)."""
    from . import runs
    from .checkpoint import load

    path = Path(run_dir) / runs.CHECKPOINT_FILE
    if not path.exists():
        return None
    try:
        return int(load(path).get("world", 1))
    except Exception as exc:  # noqa: BLE001
        raise UserError(f"{path}: cannot read checkpoint ({type(exc).__name__}: {exc})") from None


def command(nproc: int, config, sets, disable, resume, progress) -> list[str]:
    """The torchrun command line of this ``mtl train``."""
    args = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc),
            "-m", "mtl_platform.cli", "train"]
    if config is not None:
        args.append(str(config))
    for s in sets:
        args += ["--set", s]
    for d in disable:
        args += ["--disable", d]
    if resume is not None:
        args += ["--resume", str(resume)]
    if progress is not None:
        args.append("--progress" if progress else "--no-progress")
    return args


def launch(nproc: int, config, sets=(), disable=(), resume=None, progress=None) -> int | None:
    """Check, then train under torchrun with ``nproc`` processes; return the exit status
    (None for ``nproc`` 1: the caller trains in this process, as without ``--nproc``)."""
    from .session import prepare

    cfg, _, _, _ = prepare(config, sets, disable, resume)  # a bad config fails here, in one line
    limit, what = capacity(cfg["train"]["device"])
    if nproc < 1 or nproc > limit:
        raise UserError(f"--nproc: got {nproc}; this machine allows 1 to {limit} processes "
                        f"(its {what} for train.device {cfg['train']['device']!r})")
    if resume is not None:
        before = saved_world(Path(resume))
        if before is not None and before != nproc:
            raise UserError(f"--resume {resume}: the run was trained with {before} process(es), this resume "
                            f"has {nproc}; resume it with --nproc {before}")
    if nproc == 1:
        return None
    return subprocess.call(command(nproc, config, sets, disable, resume, progress))
