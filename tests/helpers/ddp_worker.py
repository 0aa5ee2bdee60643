"""A torchrun worker for the distributed tests (tests/core/test_distributed.py).

``python -m torch.distributed.run --standalone --nproc-per-node N ddp_worker.py SPEC.json``:
every rank runs the jobs of SPEC (``{"watch": root, "jobs": [{"config", "sets", "resume",
"interrupt_at", "record"}]}``) through ``session.train``, and writes to ``<record>.rank<r>.json``
(outside ``watch``) what the tests compare: its model's parameters, the epoch-mean task weights
its trainer logged, and every file-system write this rank made under ``watch`` (seen by an audit
hook: opens for writing, mkdir, rename, remove).
"""
from __future__ import annotations

import json
import os
import sys

import torch

torch.set_num_threads(1)

from mtl_platform import distributed, session  # noqa: E402
from mtl_platform.hookspecs import hookimpl  # noqa: E402

WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


class Watch:
    """File-system writes under ``root`` seen by a ``sys.addaudithook``."""

    def __init__(self, root: str):
        self.root = os.path.realpath(root)
        self.writes: list[str] = []
        sys.addaudithook(self.hook)

    def inside(self, path) -> bool:
        try:
            return isinstance(path, (str, bytes, os.PathLike)) and os.path.realpath(os.fsdecode(path)).startswith(self.root)
        except Exception:  # noqa: BLE001
            return False

    def hook(self, event, args):
        if event == "open":
            path, mode, flags = args
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or bool((flags or 0) & WRITE_FLAGS)
            if writing and self.inside(path):
                self.writes.append(f"open {path}")
        elif event in ("os.mkdir", "os.rename", "os.remove", "os.rmdir", "shutil.rmtree") and args and self.inside(args[0]):
            self.writes.append(f"{event} {args[0]}")


class Record:
    """The epoch-mean task weights the trainer logs, per epoch; raises at ``interrupt_at``."""

    __name__ = "ddp_record"

    def __init__(self, interrupt_at=None):
        self.weights: list = []
        self.interrupt_at = interrupt_at

    @hookimpl
    def mtl_epoch_end(self, run, epoch, metrics):
        self.weights.append(metrics["weights"])

    @hookimpl
    def mtl_checkpoint(self, run, path):
        if self.interrupt_at is not None and run.step == self.interrupt_at:
            raise KeyboardInterrupt


def keep_models(into: list):
    """Make every ``Trainer.fit`` append its model's final parameters to ``into`` (each rank's)."""
    from mtl_platform.trainer import Trainer

    fit = Trainer.fit

    def recorded(self, *args, **kwargs):
        results = fit(self, *args, **kwargs)
        into.append({k: v.detach().tolist() for k, v in self.exp.model.state_dict().items()})
        return results
    Trainer.fit = recorded


def main(spec_path: str) -> None:
    spec = json.loads(open(spec_path).read())
    rank = int(os.environ.get("RANK", "0"))
    watch = Watch(spec["watch"])
    models: list = []
    keep_models(models)
    distributed.init_from_env("cpu")  # joined once here, so session.train keeps the group between jobs
    for job in spec["jobs"]:
        record = Record(job.get("interrupt_at"))
        before = len(watch.writes)
        models.clear()
        try:
            results = session.train(job.get("config"), job.get("sets", []), resume=job.get("resume"),
                                    extra_plugins=[record], echo=lambda *a, **k: None)
            run_dir = results["run_dir"]
        except KeyboardInterrupt:
            run_dir = None
        out = {"rank": rank, "weights": record.weights, "writes": watch.writes[before:], "run_dir": run_dir,
               "params": models[-1] if models else None}
        with open(f"{job['record']}.rank{rank}.json", "w") as fh:
            json.dump(out, fh)
    distributed.close()


if __name__ == "__main__":
    main(sys.argv[1])
