"""``mtl sweep --executor ray``: cells as Ray tasks give the local executor's grid.md and results
byte for byte; a cell whose Ray worker dies is recorded as failed in one line, the others finish,
and the next invocation reruns it; without Ray, or with a bad ``--address``, one line and exit 2
with nothing written.

One local Ray (2 CPUs) serves the module (the ``ray_local`` fixture); the first test runs the CLI
before it exists, so the sweep starts (and shuts down) a local Ray of its own."""
import json
import logging
import os
import re
import sys
from pathlib import Path

import pytest

from mtl_platform.errors import UserError
from mtl_platform.hookspecs import hookimpl
from mtl_platform.sweep import run_sweep

from conftest import TINY, assert_one_line_error, config_writer, run_dirs
from test_cli import run_cli
from mtl_platform.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")

ARGS = ["--grid", "optimizer.lr=0.001", "--cell", "optimizer.lr=0.003"]  # two cells, grid.md with both tables


@pytest.fixture
def tiny(tmp_path):
    base = json.loads(json.dumps(TINY))
    base["train"]["epochs"] = 1
    return config_writer(base, tmp_path / "tiny.yaml", tmp_path / "plain_runs")()


@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    yield ray
    ray.shutdown()


def cli(argv, capsys):
    """``mtl ARGV``: (exit code, stdout, stderr); 0 when it returns."""
    try:
        main(argv)
        code = 0
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def sweep(config, out, grid, seeds=(), **kwargs):
    lines = []
    result = run_sweep(config, grid, list(seeds), out, progress=False, echo=lines.append, **kwargs)
    return result, [str(line) for line in lines]


def cell_lines(lines):
    return [line for line in lines if re.match(r"\[\d+/\d+\] ", line)]


def run_results(result) -> list[str]:
    """Each cell's results.json in the planned order, without what names its folder or measures time."""
    texts = []
    for cell in result["cells"]:
        data = json.loads((Path(cell["run_dir"]) / "results.json").read_text())
        texts.append(json.dumps({k: v for k, v in data.items() if k != "run_dir"},
                                sort_keys=True))
    return texts


# -- the same results as the local executor ----------------------------------------------------
def test_cli_ray_sweep_on_its_own_local_ray_equals_the_local_executor(tiny, tmp_path, capsys):
    ray = pytest.importorskip("ray")
    assert not ray.is_initialized()  # this module's first test: the sweep starts its own Ray
    local, _ = sweep(tiny, tmp_path / "local", {"optimizer.lr": ["0.001"]}, extra=[[("optimizer.lr", "0.003")]])
    out = tmp_path / "ray"
    code, stdout, err = cli(["sweep", str(tiny), *ARGS, "--out", str(out), "--executor", "ray", "--cpus-per-cell", "1",
                             "--no-progress"], capsys)
    assert code == 0, stdout + err
    assert not ray.is_initialized()  # the Ray it started is shut down
    assert re.search(r"sweep: cells on a local Ray \(\d+ CPUs, \d+ GPUs\); each cell 1 CPU\n", stdout)
    assert sorted(line.split()[1] for line in cell_lines(stdout.splitlines())) == ["trained"] * 2
    record = json.loads((out / "sweep.json").read_text())
    assert [(c["overrides"], c["status"]) for c in record["cells"]] == [
        (c["overrides"], "done") for c in local["cells"]]
    assert (out / "grid.md").read_bytes() == (tmp_path / "local" / "grid.md").read_bytes()
    ray_results = run_results(record)
    assert ray_results == run_results(local)
    assert len(set(ray_results)) == 2  # two different runs, not one result copied
    assert "| optimizer.lr=0.003 | " in (out / "grid.md").read_text()  # the --cell table

    # again: every cell is skipped, nothing trains, so no Ray is started
    code, stdout, err = cli(["sweep", str(tiny), *ARGS, "--out", str(out), "--executor", "ray", "--no-progress"],
                            capsys)
    assert code == 0 and [line.split()[1] for line in cell_lines(stdout.splitlines())] == ["skipped"] * 2
    assert "Ray" not in stdout + err and not ray.is_initialized()


# -- a worker that dies ------------------------------------------------------------------------
class Crash:
    """A plugin that kills its worker process right after the run's first checkpoint."""

    __name__ = "crash"

    @hookimpl
    def mtl_checkpoint(self, run, path):
        os._exit(1)


def crash_high_lr(job):
    """The cell runner, but the cell with optimizer.lr=0.003 dies in the middle of training."""
    from mtl_platform.sweep.cell import run_cell

    if "optimizer.lr=0.003" in job["sets"]:
        job = dict(job, plugins=[Crash()])
    return run_cell(job)


def test_a_cell_whose_worker_dies_is_recorded_and_rerun(ray_local, tiny, tmp_path, monkeypatch):
    import mtl_platform.sweep.executors as executors

    cloudpickle = ray_local.cloudpickle  # Ray pickles tasks with its own copy of cloudpickle
    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # Ray workers cannot import this test module
    try:
        monkeypatch.setattr(executors, "run_cell", crash_high_lr)
        out = tmp_path / "sw"
        grid = {"optimizer.lr": ["0.001", "0.003"]}
        result, lines = sweep(tiny, out, grid, executor="ray")
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    good, bad = result["cells"]
    assert result["failed"] == 1 and (good["status"], bad["status"]) == ("done", "failed")
    assert bad["error"].startswith("Ray worker lost: ") and "\n" not in bad["error"]
    assert any(re.match(r"\[\d/2\] failed   optimizer\.lr=0\.003: Ray worker lost: ", line) for line in lines)
    record = json.loads((out / "sweep.json").read_text())
    assert [c["status"] for c in record["cells"]] == ["done", "failed"]
    assert bad["run_dir"] and (Path(bad["run_dir"]) / "checkpoint.pt").exists()  # it died after checkpointing
    assert not (Path(bad["run_dir"]) / "results.json").exists()

    # the next invocation (the worker no longer dies) resumes only the dead cell, in its own folder
    monkeypatch.undo()
    result, lines = sweep(tiny, out, grid, executor="ray")
    assert result["failed"] == 0 and [c["status"] for c in result["cells"]] == ["done", "done"]
    assert sorted(line.split("  ")[0][6:] for line in cell_lines(lines)) == ["skipped", "trained (resumed)"]
    assert result["cells"][1]["run_dir"] == bad["run_dir"] and len(run_dirs(out / "runs")) == 2


# -- bad input ---------------------------------------------------------------------------------
def test_without_ray_the_flag_says_how_to_install_it(tiny, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray fails as if it were not installed
    out = tmp_path / "sw"
    code, stdout, err = run_cli(["sweep", str(tiny), "--seeds", "0-1", "--out", str(out), "--executor", "ray",
                                 "--no-progress"], capsys)
    assert_one_line_error(code, stdout, err, r"--executor ray: Ray is not installed; install it with "
                                             r"pip install 'mtl-platform\[ray\]'")
    assert not out.exists() and not (tmp_path / "plain_runs").exists()


BAD = {
    "address without ray": (["--address", "127.0.0.1:6379"], r"--address: only with --executor ray"),
    "cpus without ray": (["--cpus-per-cell", "2"], r"--cpus-per-cell: only with --executor ray"),
    "workers with ray": (["--executor", "ray", "--workers", "2"], r"--workers 2: only with --executor local"),
    "no cpus": (["--executor", "ray", "--cpus-per-cell", "0"], r"--cpus-per-cell 0: must be more than 0"),
    "negative gpus": (["--executor", "ray", "--gpus-per-cell", "-1"], r"--gpus-per-cell -1: must be 0 or more"),
    "address unreachable": (["--executor", "ray", "--address", "127.0.0.1:1"],
                            r"--address 127\.0\.0\.1:1: no Ray cluster reachable there"),
    "address malformed": (["--executor", "ray", "--address", "headnode"], r"--address headnode: expected HOST:PORT"),
    "auto unreachable": (["--executor", "ray", "--address", "auto"],  # RAY_ADDRESS=127.0.0.1:1, set below
                         r"--address auto: no Ray cluster reachable at \S+:1 \("),  # Ray may name localhost by its IP
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_ray_options_are_one_line_exit_2_nothing_written(case, tiny, tmp_path, capsys, monkeypatch):
    if "--executor" in BAD[case][0]:
        pytest.importorskip("ray")
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:1")  # where Ray's auto looks first
    out = tmp_path / "sw"
    code, stdout, err = run_cli(["sweep", str(tiny), "--seeds", "0-1", "--out", str(out), "--no-progress"]
                                + BAD[case][0], capsys)
    assert_one_line_error(code, stdout, err, BAD[case][1])
    assert not out.exists() and not (tmp_path / "plain_runs").exists()


def test_extra_plugins_need_the_local_executor(tiny, tmp_path):
    pytest.importorskip("ray")
    with pytest.raises(ValueError, match="need the local executor"):
        run_sweep(tiny, {}, [0], tmp_path / "sw", extra_plugins=[object()], executor="ray", echo=lambda *a: None)
    with pytest.raises(UserError, match="--executor gpu: unknown executor"):
        run_sweep(tiny, {}, [0], tmp_path / "sw", executor="gpu", echo=lambda *a: None)
    assert not (tmp_path / "sw").exists()


def test_gpus_per_cell_follow_train_device_unless_given():
    pytest.importorskip("ray")
    from mtl_platform.sweep.executors import make_executor, ray_error

    cells = [{"device": "cuda"}, {"device": "auto"}, {"device": "cpu"}]
    default = make_executor("ray")
    assert [default.gpus_of(c) for c in cells] == [1.0, 0.0, 0.0]  # a cluster without GPUs
    default.has_gpus = True
    assert [default.gpus_of(c) for c in cells] == [1.0, 1.0, 0.0]
    assert default.cpus_per_cell() == 1.0
    given = make_executor("ray", cpus_per_cell=4, gpus_per_cell=0.5)
    assert [given.gpus_of(c) for c in cells] == [0.5] * 3 and given.cpus_per_cell() == 4.0

    class TaskError(Exception):  # Ray's task error carries what the task raised as .cause
        cause = MemoryError("no room\nfor more")

    assert ray_error(TaskError("traceback\n...")) == "MemoryError: no room"
    assert ray_error(RuntimeError("died\nlog files")) == "Ray worker lost: RuntimeError: died"


class FakeRay:
    """Just enough of ``ray`` for RayExecutor.start: a cluster of 2 CPUs and no GPU."""

    def __init__(self):
        self.calls = []

    def is_initialized(self):
        return False

    def init(self, **kwargs):
        self.calls.append(("init", kwargs))

    def cluster_resources(self):
        return {"CPU": 2.0}

    def shutdown(self):
        self.calls.append(("shutdown", {}))


def test_a_cell_larger_than_the_local_ray_is_refused_on_a_cluster_a_warning(monkeypatch):
    import mtl_platform.sweep.executors as executors
    from mtl_platform.sweep.executors import make_executor

    fake = FakeRay()
    monkeypatch.setitem(sys.modules, "ray", fake)
    monkeypatch.setattr(executors, "cores", lambda: 2)
    with pytest.raises(UserError, match=r"^--executor ray: a cell needs 4 CPUs, the local Ray has 2; no cell"):
        make_executor("ray", cpus_per_cell=4).start([{"device": "cpu"}], echo=lambda *a: None)
    with pytest.raises(UserError, match=r"a cell needs 1 GPU, the local Ray has 0 \(train\.device cuda needs a GPU\)"):
        make_executor("ray").start([{"device": "cpu"}, {"device": "cuda"}], echo=lambda *a: None)
    assert [name for name, _ in fake.calls] == ["init", "shutdown"] * 2  # the Ray it started is stopped
    assert fake.calls[0][1]["address"] == "local" and fake.calls[0][1]["num_cpus"] == 2

    fake.calls.clear()
    monkeypatch.setattr(executors, "check_reachable", lambda address: None)
    lines = []
    cluster = make_executor("ray", address="head:6379", cpus_per_cell=4)
    cluster.start([{"device": "cpu"}], echo=lines.append)
    assert fake.calls == [("init", {"address": "head:6379", "logging_level": logging.WARNING})]
    assert lines == ["sweep: cells on the Ray cluster at head:6379 (2 CPUs, 0 GPUs); each cell 4 CPUs",
                     "sweep: warning: a cell needs 4 CPUs, the cluster has 2 now; cells wait until it has them"]
    cluster.close()
    assert fake.calls[-1][0] == "shutdown"
