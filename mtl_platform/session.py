"""One ``mtl train``: read and validate the config, load data, train the STL baselines
(or reuse them), train the multi-task model, write results and the report.

The run directory is created only after the config validated and the data loaded, so a
bad input never leaves a half-written run behind.
"""
from __future__ import annotations

import shlex
from pathlib import Path
from typing import Iterable

from . import distributed
from . import registry as registry_mod
from . import runs
from .baselines import ensure_baselines
from .atomic import atomic_write_text
from .checkpoint import last_checkpoint
from .config import apply_overrides, config_hash, disabled_plugins, dump, read_yaml, resolve
from .errors import UserError
from .contracts.domain import Domain
from .experiment import build_domain, build_experiment



class Interrupted(KeyboardInterrupt):
    """Ctrl-C during training; the message says where the run can continue from."""


def interruption_message(run_dir: Path) -> str:
    """One line: the last checkpoint (1-based epoch, batch, global step) and the exact resume
    command. The checkpoint and the rows before it are intact: checkpoints are written
    atomically and a resume cuts ``metrics.jsonl`` back to the checkpoint (DESIGN.md §10)."""
    last = last_checkpoint(run_dir)
    command = f"mtl train --resume {shlex.quote(str(run_dir))}"
    if last is None:
        return f"interrupted before the first checkpoint; {command} starts the run again from scratch"
    where = (f"end of epoch {last['epoch']}" if last["batch"] == 0
             else f"epoch {last['epoch'] + 1} batch {last['batch']}")
    stage = f"stage {last['stage']}, " if last["stage"] not in (None, "main") else ""
    return (f"interrupted; last checkpoint: {stage}{where}, step {last['step']} ({last['path']}); "
            f"continue with: {command}")


def selection_reference(baselines: dict | None, tasks: list[str]) -> dict | None:
    """The baselines' validation metrics of the selection tasks (None, so that the first epoch
    is the reference, unless the baselines cover every one of them)."""
    if not baselines:
        return None
    found: dict = {}
    for entry in baselines.values():
        for task, metrics in entry["results"]["val"].items():
            if task in tasks:
                found.setdefault(task, metrics)
    return found if set(found) == set(tasks) else None

def prepare(config_path: str | Path | None = None, sets: Iterable[str] = (), disable: Iterable[str] = (),
            resume: str | Path | None = None, extra_plugins: Iterable = (), progress: bool | None = None):
    """Validate everything; return (config, registry, pm, run_dir or None)."""
    sets = list(sets)
    if resume is not None:
        run_dir = Path(resume)
        if sets:
            raise UserError("--set cannot be combined with --resume: a resumed run keeps its saved config")
        if not (run_dir / runs.CONFIG_FILE).is_file():
            raise UserError(f"--resume {run_dir}: not a run directory (no {runs.CONFIG_FILE})")
        raw = read_yaml(run_dir / runs.CONFIG_FILE)
        keys: list[str] = []
        name = None
    else:
        if config_path is None:
            raise UserError("mtl train: give a CONFIG file or --resume RUN_DIR")
        raw, keys = apply_overrides(read_yaml(config_path), sets)
        name = Path(config_path).stem
        run_dir = None
    disabled = disabled_plugins(raw, disable)
    registry, pm = registry_mod.load(disabled, extra_plugins)
    config = resolve(raw, registry, name=name, overridden=keys)
    if disabled:
        config["plugins"]["disable"] = disabled
    if progress is not None:
        config["train"]["progress"] = progress
    return config, registry, pm, run_dir


def experiment_label(config: dict, domain=None) -> str:
    """``architecture + weighting`` (``+ closure`` when one is set), prefixed by what the domain
    says tells its runs apart (``Domain.label_prefix``, e.g. UDA's method)."""
    label = f"{config['architecture']['name']} + {config['weighting']['name']}"
    if config.get("closure") is not None:
        label += f" + {config['closure']['name']}"
    prefix = domain.label_prefix() if domain is not None and hasattr(domain, "label_prefix") else ""
    return f"{prefix} · {label}" if prefix else label


def check_distributable(config: dict, domain, plan) -> None:
    """Refuse, in one line, what a distributed run cannot reduce: a method whose gradients are
    taken outside the engine (a closure method, a domain's own update protocol) or a run of
    several stages (search architectures step parts of the model by themselves)."""
    size = distributed.world()
    if size <= 1:
        return
    why = None
    if config.get("closure") is not None:
        why = f"closure {config['closure']['name']!r} evaluates and steps on each batch by itself"
    elif type(domain).train_step is not Domain.train_step:
        why = f"domain {domain.name!r} has its own update protocol"
    elif len(plan) > 1:
        why = f"architecture {config['architecture']['name']!r} trains in {len(plan)} stages"
    if why:
        raise UserError(f"distributed training ({size} processes): {why}; only the ordinary update of one "
                        f"stage is reduced across processes, so train this config in one process")


def train(config_path: str | Path | None = None, sets: Iterable[str] = (), disable: Iterable[str] = (),
          resume: str | Path | None = None, extra_plugins: Iterable = (), progress: bool | None = None,
          echo=print) -> dict:
    """Run ``mtl train``; return the results dict also written to ``results.json``. Under
    ``torchrun`` (``WORLD_SIZE`` > 1) every process calls this; rank 0 writes and speaks."""
    config, registry, pm, run_dir = prepare(config_path, sets, disable, resume, extra_plugins, progress)
    joined = distributed.requested_world() > 1 and distributed.world() == 1
    distributed.init_from_env(config["train"]["device"])
    try:
        return _train(config, registry, pm, run_dir, resume, echo if distributed.writes() else _silent)
    finally:
        if joined:
            distributed.close()


def _silent(*args, **kwargs) -> None:
    """The echo of the ranks other than 0."""


def _train(config, registry, pm, run_dir, resume, echo) -> dict:
    if not distributed.writes():
        config["train"]["progress"] = False
    arch = registry.get("architecture", config["architecture"]["name"]).cls
    domain = build_domain(config, registry)  # loads the data: a bad path fails here
    # what a search will fill in is checked with the architecture's placeholders now
    checked = dict(config, weighting=arch.checked_weighting(config["weighting"], domain.task_names))
    exp = build_experiment(checked, registry, domain)  # builds model and weighting: bad parameters fail here
    plan = arch.stage_plan(config, domain=exp.domain, registry=registry)  # a bad stage setting fails here
    check_distributable(config, exp.domain, plan)
    loggers = build_loggers(config, registry)  # a missing optional dependency fails here
    if run_dir is None:
        run_dir = Path(distributed.on_rank0(
            lambda: str(runs.create_run_dir(config["output"]["root"], config["output"]["name"]))))
        atomic_write_text(run_dir / runs.CONFIG_FILE, dump(config))
        echo(f"run directory: {run_dir}")
    for logger in loggers:
        logger.root = Path(run_dir)
        pm.register(logger, name=f"logger:{logger.name}")
    try:
        return _train_in(Path(run_dir), config, registry, pm, exp, plan, resume, echo)
    except KeyboardInterrupt:  # Ctrl-C, in the baselines or a stage: one line (the CLI exits 130)
        raise Interrupted(interruption_message(Path(run_dir))) from None


def build_loggers(config: dict, registry) -> list:
    """One logger per entry of the config's ``loggers`` list (``contracts.Logger``)."""
    built = []
    for section in config.get("loggers") or []:
        cls = registry.get("logger", section["name"], where="loggers").cls
        built.append(cls(**{k: v for k, v in section.items() if k != "name"}))
    return built


def _train_in(run_dir: Path, config, registry, pm, exp, plan, resume, echo) -> dict:
    """Train (or resume) the baselines and the stages of ``plan`` in ``run_dir``; write the report."""
    baselines = None
    if config["baselines"]["stl"]:
        baselines = ensure_baselines(config, exp.domain.eval_tasks, registry, pm, echo)
        runs.write_json(run_dir / runs.BASELINES_FILE, {
            t: {"hash": b["hash"], "path": b["path"], "epoch": b["results"]["epoch"],
                "val": b["results"]["val"].get(t), "test": b["results"]["test"][t]}
            for t, b in baselines.items()})
    reference = selection_reference(baselines, exp.domain.selection_tasks)
    extra = {
        "config_name": config["output"]["name"],
        "group": config_hash(config, without=[("train", "seed")]),
        "label": experiment_label(config, exp.domain),
        "stl": {t: b["results"]["test"][t] for t, b in baselines.items()} if baselines else None,
        "stl_hashes": {t: b["hash"] for t, b in baselines.items()} if baselines else None,
    }
    from .contracts.stage import StageContext
    from .stages import run_stages

    ctx = StageContext(config=config, registry=registry, pm=pm, domain=exp.domain, run_dir=Path(run_dir),
                       stage_dir=Path(run_dir), resume=resume is not None, reference=reference, extra=extra,
                       echo=echo)
    results = run_stages(plan, ctx)
    if baselines and distributed.writes():
        from .report import build_report, render_terminal, write_report

        report = build_report([results])
        echo(render_terminal(report))
        write_report(report, run_dir, config["report"]["formats"])
    return results
