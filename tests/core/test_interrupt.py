"""Ctrl-C during ``mtl train`` (issue 23, item 6): one line naming the last checkpoint and the exact
resume command, exit code 130, nothing written torn; the resume starts at the saved step."""
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from mtl_platform import runs

from conftest import TINY

MTL = [sys.executable, "-c", "from mtl_platform.cli import main; main()"]


def start(args, env):
    # SIGINT back to its default in the child: a test run launched in the background (nohup ... &,
    # as CI may be) inherits SIGINT ignored, and Python then installs no KeyboardInterrupt handler
    return subprocess.Popen(MTL + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def wait_for(predicate, proc, timeout=120.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        if proc.poll() is not None:
            pytest.fail(f"mtl exited {proc.returncode} early: {proc.communicate()}")
        time.sleep(0.05)
    proc.kill()
    pytest.fail("timed out")


def interrupt(proc):
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    return proc.returncode, out, err


def test_ctrl_c_prints_the_last_checkpoint_and_the_resume_command_and_exits_130(tmp_path):
    cfg = dict(TINY, output={"root": str(tmp_path / "runs")})
    cfg["train"] = dict(cfg["train"], epochs=100_000, checkpoint_every=2)  # cannot finish before the signal, however loaded the machine
    path = tmp_path / "long.yaml"
    path.write_text(yaml.safe_dump(cfg))
    env = dict(os.environ, OMP_NUM_THREADS="1")

    proc = start(["train", str(path), "--no-progress"], env)
    wait_for(lambda: any((tmp_path / "runs").glob("*/checkpoint.pt")), proc)
    code, out, err = interrupt(proc)
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert code == 130, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    found = re.fullmatch(r"mtl: interrupted; last checkpoint: (?:end of epoch (\d+)|epoch (\d+) batch (\d+)), "
                         r"step (\d+) \((.+)\); continue with: mtl train --resume (.+)", lines[0])
    assert found, lines[0]
    assert Path(found[6]) == run_dir and Path(found[5]) == run_dir / runs.CHECKPOINT_FILE
    state = torch.load(run_dir / runs.CHECKPOINT_FILE, weights_only=True)  # intact
    assert int(found[4]) == state["step"] >= 2
    if found[1] is not None:
        assert (int(found[1]), 0) == (state["epoch"], state["batch"])
    else:
        assert (int(found[2]) - 1, int(found[3])) == (state["epoch"], state["batch"])
    rows = runs.read_jsonl(run_dir / runs.METRICS_FILE)
    assert all(r["step"] <= state["step"] or r is rows[-1] for r in rows)  # at most one row past it, whole

    # the printed command resumes at the saved step (then a second Ctrl-C says the same of its checkpoint)
    resumed = start(["train", "--resume", found[6], "--no-progress"], env)
    first = resumed.stdout.readline()
    assert re.fullmatch(rf"resuming main at epoch {state['epoch'] + 1}, batch {state['batch']} "
                        rf"\(step {state['step']}\)\n", first), first
    code, _, err = interrupt(resumed)
    assert code == 130 and len(err.strip().splitlines()) == 1 and "continue with: mtl train --resume" in err, err
    assert torch.load(run_dir / runs.CHECKPOINT_FILE, weights_only=True)["step"] >= state["step"]


def test_ctrl_c_before_the_first_checkpoint_says_the_run_starts_again(tmp_path):
    from mtl_platform.session import interruption_message

    (tmp_path / "run").mkdir()
    line = interruption_message(tmp_path / "run")
    assert line == (f"interrupted before the first checkpoint; mtl train --resume {tmp_path / 'run'} "
                    f"starts the run again from scratch")
