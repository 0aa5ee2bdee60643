"""Checkpoints (``checkpoint.py``): a crash while writing one leaves the previous checkpoint
byte-for-byte intact."""
import hashlib

import pytest
import torch

from mtl_platform import session
from mtl_platform.hookspecs import hookimpl

from conftest import run_dirs
from test_trainer import quiet


def test_checkpoints_are_atomic(write_config, tmp_path, monkeypatch):
    """A crash while writing leaves the previous checkpoint byte-for-byte intact."""
    from mtl_platform import checkpoint

    cfg = write_config({"train.epochs": 2})
    digests = []

    class Crash:
        __name__ = "crash"

        @hookimpl
        def mtl_checkpoint(self, run, path):
            digests.append(hashlib.sha256(path.read_bytes()).hexdigest())
            real = torch.save

            def failing(obj, fh, *a, **k):
                fh.write(b"partial")
                raise OSError("disk full")

            monkeypatch.setattr(checkpoint.torch, "save", failing)
            self.restore = lambda: monkeypatch.setattr(checkpoint.torch, "save", real)

    with pytest.raises(OSError, match="disk full"):
        session.train(cfg, extra_plugins=[Crash()], **quiet)
    (run_dir,) = run_dirs(tmp_path / "runs")
    assert hashlib.sha256((run_dir / "checkpoint.pt").read_bytes()).hexdigest() == digests[0]
    assert [p.name for p in run_dir.iterdir() if p.name.startswith(".")] == []
