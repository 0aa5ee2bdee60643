"""Single-task (STL) baselines, trained by the platform and cached (DESIGN.md §7).

``stl_config(config, task, registry)`` derives a task's STL config (same encoder and head,
one task, same optimizer, schedule, epochs and seed; the single-task model is data,
``baselines.stl_architecture`` and ``baselines.stl_weighting``); DSMTL-IL's first stage uses
it too. Entries live under ``$MTL_CACHE`` (default ``~/.cache/mtl-platform``) keyed by the
hash of the canonical STL config plus the platform's version, with their metrics and
weights; an entry is written atomically (trained in a temporary folder, then renamed) under
a lock for parallel sweeps.
"""
from __future__ import annotations

import copy
import fcntl
import json
import os
import shutil
import tempfile
from contextlib import contextmanager, nullcontext
from pathlib import Path

from . import distributed, runs
from .config import config_hash, dump, stl_sections
from .errors import UserError
from .experiment import build_experiment
from .registry import Registry
from .trainer import Trainer


def cache_root() -> Path:
    return Path(os.environ.get("MTL_CACHE") or Path.home() / ".cache" / "mtl-platform")


def stl_config(config: dict, task: str, registry: Registry) -> dict:
    """The STL counterpart of ``config`` for ``task``: one task, the single-task model of
    ``baselines.stl_architecture`` trained with ``baselines.stl_weighting`` (null: the ones
    the plugins declare, ``config.stl_sections``), with the ordinary update (no closure method:
    PGA and MPGA need several tasks); everything else as in ``config``."""
    out = copy.deepcopy(config)
    out["domain"]["tasks"] = [task]
    out.update(stl_sections(config, registry))
    out["gradients"] = dict(out["gradients"], mode="param")
    out["baselines"] = {"stl": False}
    out["closure"] = None  # like the weighting, the closure method is part of the multi-task method
    out["loggers"] = []  # the cached baselines are not logged (the run's loggers log the run)
    out["output"] = dict(out["output"], name=f"stl_{task}")
    return out


@contextmanager
def _locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ensure_baseline(config: dict, task: str, registry: Registry, pm, echo=print) -> dict:
    """The cached STL entry of ``task`` (trained now if absent): ``{hash, path, results}``.

    In a distributed run every rank trains the baseline with the others (the same trainer,
    reduced the same way); rank 0 alone takes the lock, decides whether the entry exists and
    writes it."""
    cfg = stl_config(config, task, registry)
    domain = registry.get("domain", cfg["domain"]["name"]).cls
    if hasattr(domain, "stl_domain_config"):  # what the domain's single-task run does not depend on
        cfg["domain"] = domain.stl_domain_config(cfg["domain"])
    key = config_hash(cfg, registry=registry)
    root = cache_root() / "stl"
    entry = root / key
    writer = distributed.writes()
    with _locked(root / f"{key}.lock") if writer else nullcontext():
        done = entry / runs.RESULTS_FILE
        cached = distributed.on_rank0(lambda: json.loads(done.read_text()) if done.exists() else None)
        if cached is not None:
            echo(f"STL baseline for task {task!r}: reusing cached {key[:12]} ({entry})")
            return {"hash": key, "path": str(entry), "results": cached, "reused": True}
        echo(f"STL baseline for task {task!r}: training ({key[:12]})")
        tmp = Path(distributed.on_rank0(lambda: tempfile.mkdtemp(prefix=f".{key[:12]}.", dir=root)))
        try:
            if writer:
                (tmp / runs.CONFIG_FILE).write_text(dump(cfg))
            trainer = Trainer(build_experiment(cfg, registry), tmp, pm, stage=f"stl:{task}", echo=echo)
            results = trainer.fit()
            results["run_dir"] = str(entry)
            if writer:
                shutil.copyfile(trainer.selected_weights(), tmp / "weights.pt")
                for name in ("model.pt", "best.pt", runs.CHECKPOINT_FILE):
                    (tmp / name).unlink(missing_ok=True)
                runs.write_json(tmp / runs.RESULTS_FILE, results)
                os.replace(tmp, entry)
        except BaseException:
            if writer:
                shutil.rmtree(tmp, ignore_errors=True)
            raise
    return {"hash": key, "path": str(entry), "results": results, "reused": False}


def ensure_baselines(config: dict, tasks: list[str], registry: Registry, pm, echo=print) -> dict:
    return {t: ensure_baseline(config, t, registry, pm, echo) for t in tasks}


def stl_parts(config: dict, task: str, registry: Registry, weights: str | Path) -> tuple[dict, dict]:
    """The cached STL model of ``task`` (its ``weights`` file) split into (encoder state, head
    state) by its architecture's ``split_task_state``, so a later stage (DSMTL-IL) can load
    them into its own copies of the encoder and the head."""
    from .checkpoint import load

    name = stl_config(config, task, registry)["architecture"]["name"]
    try:
        return registry.get("architecture", name).cls.split_task_state(load(Path(weights)), task)
    except NotImplementedError as exc:
        raise UserError(f"the STL models' architecture {name!r} cannot be reused here: {exc}") from None
