"""Where a sweep's cells run: the executor seam (DESIGN.md §3.7). The runner plans the cells and
records their outcomes; an executor only trains the jobs it is given and hands each outcome to
``finish`` as it completes, so an interrupted sweep keeps every cell that finished.

- ``local``: in this process (``workers == 1``) or in a pool of spawned worker processes.
- ``ray``: each cell a Ray task with declared CPU/GPU resources, on a local Ray started for the
  sweep (and shut down after it) or on an existing cluster (``--address``). Ray is an optional
  extra (``pip install 'mtl-platform[ray]'``), imported only here.

Both run the same :func:`~mtl_platform.sweep.cell.run_cell`, so the outcome dicts, and the run
directories it writes, are the same whichever executor ran them."""
from __future__ import annotations

import logging
import os
import socket
from typing import Callable

from mtl_platform.errors import UserError

from .cell import one_line, run_cell

EXECUTORS = ("local", "ray")
RAY_INSTALL = "pip install 'mtl-platform[ray]'"

Jobs = list[tuple[dict, dict]]  # (cell, job) pairs: the runner's cell record and run_cell's job


def cores() -> int:
    """CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        return os.cpu_count() or 1


def make_executor(name: str = "local", workers: int = 1, plugins: list | None = None, address: str | None = None,
                  cpus_per_cell: float | None = None, gpus_per_cell: float | None = None):
    """The executor ``name`` with its options checked (a bad combination is one UserError);
    nothing is started yet (:meth:`start` does, after the cells are planned)."""
    if name not in EXECUTORS:
        raise UserError(f"--executor {name}: unknown executor; choose one of {', '.join(EXECUTORS)}")
    if not isinstance(workers, int) or workers < 1:
        raise UserError(f"--workers {workers}: must be 1 or more")
    if name == "local":
        for flag, value in (("--address", address), ("--cpus-per-cell", cpus_per_cell),
                            ("--gpus-per-cell", gpus_per_cell)):
            if value is not None:
                raise UserError(f"{flag}: only with --executor ray (the local executor runs --workers processes)")
        if plugins and workers > 1:
            raise ValueError("extra_plugins need workers == 1 (plugin objects stay in this process)")
        return LocalExecutor(workers, plugins or [])
    if workers != 1:
        raise UserError(f"--workers {workers}: only with --executor local (Ray runs as many cells at once as "
                        f"its resources allow; size them with --cpus-per-cell/--gpus-per-cell)")
    if plugins:
        raise ValueError("extra_plugins need the local executor (plugin objects stay in this process)")
    if cpus_per_cell is not None and not cpus_per_cell > 0:
        raise UserError(f"--cpus-per-cell {cpus_per_cell:g}: must be more than 0")
    if gpus_per_cell is not None and not gpus_per_cell >= 0:
        raise UserError(f"--gpus-per-cell {gpus_per_cell:g}: must be 0 or more")
    return RayExecutor(address, cpus_per_cell, gpus_per_cell)


# -- local -------------------------------------------------------------------------------------
class LocalExecutor:
    """Cells in this process, one after another, or in ``workers`` spawned processes, each with
    an equal share of the cores as torch threads."""

    def __init__(self, workers: int, plugins: list):
        self.workers, self.plugins = workers, plugins

    def start(self, cells: list[dict], echo: Callable) -> None:
        pass

    def run(self, jobs: Jobs, finish: Callable) -> None:
        if self.workers == 1:
            for cell, job in jobs:
                finish(cell, run_cell(dict(job, plugins=self.plugins)))
        elif jobs:
            self._run_parallel(jobs, finish)

    def close(self) -> None:
        pass

    def _run_parallel(self, jobs: Jobs, finish: Callable) -> None:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        threads = max(1, cores() // self.workers)
        pool = ProcessPoolExecutor(max_workers=min(self.workers, len(jobs)),
                                   mp_context=multiprocessing.get_context("spawn"))
        try:
            futures = {pool.submit(run_cell, dict(job, threads=threads)): cell for cell, job in jobs}
            for future in as_completed(futures):
                try:
                    outcome = future.result()
                except Exception as exc:  # noqa: BLE001 - a worker died (killed, out of memory)
                    outcome = {"status": "failed", "error": f"{type(exc).__name__}: {exc}".splitlines()[0]}
                finish(futures[future], outcome)
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown(wait=True)


# -- ray ---------------------------------------------------------------------------------------
def import_ray():
    """The ``ray`` module, or one UserError saying how to install it."""
    try:
        import ray
    except ImportError:
        raise UserError(f"--executor ray: Ray is not installed; install it with {RAY_INSTALL}") from None
    return ray


def _auto_address() -> str | None:
    """What Ray reads ``auto`` as (``RAY_ADDRESS``, else the cluster ``ray start`` last recorded on
    this machine), or None when it finds none. Ray says so through a private helper; without it,
    ``RAY_ADDRESS`` alone."""
    try:
        from ray._private.services import canonicalize_bootstrap_address

        return canonicalize_bootstrap_address("auto")
    except Exception:  # noqa: BLE001 - the helper moved, or found nothing: ray.init says what it finds
        return os.environ.get("RAY_ADDRESS") or None


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """One UserError unless something listens at ``address`` (``HOST:PORT``, ``ray://HOST:PORT``,
    or ``auto`` where it names one).

    ``ray.init`` retries an unreachable address for minutes; a plain TCP connection answers in
    seconds."""
    target = _auto_address() if address == "auto" else address
    if target is None:
        return
    host, sep, port = target.split("://", 1)[-1].rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit():
        raise UserError(f"--address {address}: expected HOST:PORT (as `ray start --head` prints it), "
                        f"ray://HOST:PORT or auto")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as exc:
        there = "there" if target == address else f"at {target}"
        raise UserError(f"--address {address}: no Ray cluster reachable {there} ({exc.strerror or exc})") from None


def ray_error(exc: BaseException) -> str:
    """One line for a Ray task that did not return: the cause of a task error, or what Ray says
    happened to the worker (died, killed for memory, cancelled)."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException):
        return one_line(cause)
    return f"Ray worker lost: {one_line(exc)}"


class RayExecutor:
    """Each cell a Ray task (``num_cpus`` = ``--cpus-per-cell``, default 1, also its torch
    threads; ``num_gpus`` = ``--gpus-per-cell``, default 1 for a cell whose ``train.device`` is
    ``cuda``, or ``auto`` on a cluster with GPUs, else 0), retried never: a task whose worker
    dies is recorded as failed and runs again on the next invocation."""

    def __init__(self, address: str | None, cpus_per_cell: float | None, gpus_per_cell: float | None):
        self.ray = import_ray()
        self.address, self.cpus, self.gpus = address, cpus_per_cell, gpus_per_cell
        self.connected = False  # by this executor (then close() disconnects, and stops a local Ray)
        self.local = False  # a local Ray started by this executor: its resources are all there will be
        self.has_gpus = False

    def start(self, cells: list[dict], echo: Callable) -> None:
        """Connect to ``--address``, or else use the Ray this process already initialised, or
        else start a local Ray sized to this machine; check that a cell's resources can fit."""
        ray = self.ray
        if self.address is not None:
            check_reachable(self.address)
            try:
                ray.init(address=self.address, logging_level=logging.WARNING)
            except Exception as exc:  # noqa: BLE001 - ConnectionError, ValueError, RuntimeError: one line
                hint = ("; a cluster with token authentication also needs RAY_AUTH_MODE=token here"
                        if "RAY_AUTH_MODE" not in os.environ else "")
                raise UserError(f"--address {self.address}: cannot connect to a Ray cluster "
                                f"({one_line(exc)}){hint}") from None
            self.connected = True
            where = f"the Ray cluster at {self.address}"
        elif ray.is_initialized():
            where = "the Ray this process started"
        else:
            try:
                # Ray's notes while it starts (token authentication on, /dev/shm size) would break
                # the one-line errors below; its warnings while cells run are kept
                ray.init(address="local", num_cpus=cores(), include_dashboard=False, logging_level=logging.ERROR)
                logging.getLogger("ray").setLevel(logging.WARNING)
            except Exception as exc:  # noqa: BLE001
                raise UserError(f"--executor ray: cannot start a local Ray ({one_line(exc)})") from None
            self.connected = self.local = True
            where = "a local Ray"
        total = ray.cluster_resources()
        have_cpus, have_gpus = total.get("CPU", 0), total.get("GPU", 0)
        self.has_gpus = have_gpus > 0
        cpus = self.cpus_per_cell()
        gpus = max((self.gpus_of(c) for c in cells), default=0)
        short = [f"a cell needs {need:g} {kind}{'s' * (need != 1)}, the {'local Ray' if self.local else 'cluster'} "
                 f"has {have:g}"
                 for need, have, kind in ((cpus, have_cpus, "CPU"), (gpus, have_gpus, "GPU")) if need > have]
        if short and self.local:
            self.close()
            hint = " (train.device cuda needs a GPU)" if gpus > have_gpus and self.gpus is None else ""
            raise UserError(f"--executor ray: {'; '.join(short)}{hint}; no cell could ever start")
        echo(f"sweep: cells on {where} ({have_cpus:g} CPUs, {have_gpus:g} GPUs); "
             f"each cell {cpus:g} CPU{'s' * (cpus != 1)}" + (f", up to {gpus:g} GPU{'s' * (gpus != 1)}" if gpus else ""))
        for line in short:  # a cluster may grow (autoscaler); say so rather than refuse
            echo(f"sweep: warning: {line} now; cells wait until it has them")

    def cpus_per_cell(self) -> float:
        return 1.0 if self.cpus is None else float(self.cpus)

    def gpus_of(self, cell: dict) -> float:
        if self.gpus is not None:
            return float(self.gpus)
        device = cell.get("device", "auto")
        return 1.0 if device == "cuda" or (device == "auto" and self.has_gpus) else 0.0

    def run(self, jobs: Jobs, finish: Callable) -> None:
        ray = self.ray
        task = ray.remote(run_cell)
        extras = {"threads": max(1, int(self.cpus_per_cell())), "cwd": os.getcwd(),
                  "env": {k: v for k, v in os.environ.items() if k.startswith("MTL_")}}
        pending = {}
        try:
            for cell, job in jobs:
                ref = task.options(num_cpus=self.cpus_per_cell(), num_gpus=self.gpus_of(cell),
                                   max_retries=0).remote(dict(job, **extras))
                pending[ref] = cell
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                for ref in ready:
                    cell = pending.pop(ref)
                    try:
                        outcome = ray.get(ref)
                    except ray.exceptions.RayError as exc:  # the worker died, was killed, or the task raised
                        outcome = {"status": "failed", "error": ray_error(exc)}
                    finish(cell, outcome)
        except BaseException:
            for ref in pending:
                try:
                    ray.cancel(ref, force=True)
                except Exception:  # noqa: BLE001 - already finished or gone
                    pass
            raise

    def close(self) -> None:
        if self.connected:
            self.connected = False
            self.ray.shutdown()
