"""The ``mtl`` command line (click). One top-level handler: a user error prints one line
to stderr and exits 2; anything else is a bug and keeps its traceback (DESIGN.md §6).

Heavy modules (torch, the trainer, matplotlib) are imported inside the commands, so
``mtl --help`` stays fast and light.
"""
from __future__ import annotations

import os
import sys

import click

from .errors import UserError

_NO_ARGS_IS_HELP = getattr(click.exceptions, "NoArgsIsHelpError", ())  # click >= 8.2
KIND_ALIASES = {"architectures": "architecture", "weightings": "weighting", "domains": "domain",
                "closures": "closure", "loggers": "logger"}


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="mtl-platform", prog_name="mtl")
def cli():
    """mtl-platform: multi-task learning from one YAML file, with STL baselines and safe-MTL reports."""


@cli.command()
@click.argument("config", required=False, type=click.Path(dir_okay=False))
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Override a config key, e.g. --set optimizer.lr=0.01 (repeatable).")
@click.option("--disable", multiple=True, metavar="NAME",
              help="Block a plugin (entry-point name) or a component (kind:name) (repeatable).")
@click.option("--resume", "resume", type=click.Path(file_okay=False), metavar="RUN_DIR",
              help="Continue an interrupted run from its last checkpoint.")
@click.option("--progress/--no-progress", default=None, help="Show progress bars (default: the config's).")
@click.option("--nproc", type=int, default=None, metavar="N",
              help="Train data-parallel in N processes on this machine (launches torchrun; batch_size is "
                   "per process). See docs/distributed.md.")
def train(config, sets, disable, resume, progress, nproc):
    """Train the experiment described by CONFIG (a YAML file)."""
    if config is not None and resume is not None:
        raise UserError("give either CONFIG or --resume RUN_DIR, not both")
    if nproc is not None:
        from .launch import launch

        status = launch(nproc, config, sets, disable, resume, progress)
        if status is not None:
            sys.exit(status)
    from .session import Interrupted
    from .session import train as run_train
    from .trainer import NonFiniteLoss

    try:
        results = run_train(config, sets, disable, resume, progress=progress, echo=click.echo)
    except NonFiniteLoss as exc:
        click.echo(f"mtl: {exc}", err=True)
        sys.exit(1)
    except Interrupted as exc:  # Ctrl-C: one line, where to continue from
        if os.environ.get("RANK", "0") == "0":
            click.echo(f"mtl: {exc}", err=True)
        sys.exit(130)
    if os.environ.get("RANK", "0") == "0":  # under torchrun, rank 0 says it (the group is closed by now)
        click.echo(f"results: {results['run_dir']}/results.json")


@cli.command()
@click.argument("config", type=click.Path(dir_okay=False))
@click.option("--grid", "grids", multiple=True, metavar="KEY=V1,V2",
              help="Values of a config key to sweep, e.g. --grid weighting.name=ew,gh (repeatable: "
                   "the cells are the Cartesian product).")
@click.option("--cell", "extra", multiple=True, metavar="'KEY=VALUE; KEY=VALUE'",
              help="One more cell outside the grid (repeatable): CONFIG and --set with these assignments "
                   "(its value wins over --set; grid values are not applied), × every seed.")
@click.option("--seeds", metavar="SPEC", default=None,
              help="Seeds of every cell: a range 0-4 or a list 0,2,5 (default: the config's seed).")
@click.option("--workers", type=int, default=1, show_default=True,
              help="Cells trained in parallel (worker processes; --executor local).")
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="Where cells run: this machine's processes, or Ray tasks (pip install 'mtl-platform[ray]').")
@click.option("--address", metavar="ADDR", default=None,
              help="With --executor ray: an existing Ray cluster (HOST:PORT from `ray start --head`, or auto); "
                   "default: a local Ray started for the sweep.")
@click.option("--cpus-per-cell", type=float, default=None, metavar="N",
              help="With --executor ray: CPUs each cell reserves, also its torch threads (default 1).")
@click.option("--gpus-per-cell", type=float, default=None, metavar="N",
              help="With --executor ray: GPUs each cell reserves (default 1 if its train.device is cuda, "
                   "or auto on a cluster with GPUs; else 0).")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Sweep folder: runs/, sweep.json and the report (default: runs/sweeps/<config name>).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Override a config key in every cell, e.g. --set train.epochs=5 (repeatable).")
@click.option("--progress/--no-progress", default=None, help="Show a progress bar over cells (default: on a terminal).")
def sweep(config, grids, extra, seeds, workers, executor, address, cpus_per_cell, gpus_per_cell, out, sets,
          progress):
    """Train CONFIG for every combination of --grid values and --seeds, and every --cell × --seeds,
    then report them together.

    Re-running the same command skips finished cells and resumes interrupted ones."""
    from .sweep import parse_cells, parse_grid, parse_seeds, run_sweep

    if progress is None:
        progress = sys.stderr.isatty()
    result = run_sweep(config, parse_grid(grids), parse_seeds(seeds), out, sets=sets, workers=workers,
                       progress=progress, echo=click.echo, extra=parse_cells(extra), executor=executor,
                       address=address, cpus_per_cell=cpus_per_cell, gpus_per_cell=gpus_per_cell)
    if result["failed"]:
        sys.exit(1)


@cli.command()
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path())
@click.option("--out", type=click.Path(file_okay=False), default=".", show_default=True,
              help="Folder for report.md, report.json, report_delta.png (and the other figures), report.html.")
@click.option("--format", "formats", multiple=True, type=click.Choice(["md", "json", "png", "html"]),
              help="Which files to write (default: md, json, png).")
@click.option("--html", "html", is_flag=True, help="Also write report.html: one self-contained page (no network).")
def report(run_dirs, out, formats, html):
    """Report Δ per task, Δp and η of one or more runs (seeds are grouped, methods compared)."""
    from pathlib import Path

    from .report import DEFAULT_FORMATS, build_report, load_results, render_terminal, write_report

    try:
        rep = build_report(load_results(run_dirs))
    except ValueError as exc:
        raise UserError(f"mtl report: {exc}") from None
    click.echo(render_terminal(rep))
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"--out {out}: cannot create folder ({exc.strerror})") from None
    chosen = list(formats or DEFAULT_FORMATS) + (["html"] if html and "html" not in formats else [])
    for path in write_report(rep, out, chosen):
        click.echo(f"wrote {path}")


@cli.command(name="eval")
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--split", type=click.Choice(["train", "val", "test"]), default="test", show_default=True,
              help="The split to evaluate.")
@click.option("--checkpoint", type=click.Choice(["best", "last"]), default="best", show_default=True,
              help="best: the weights of the epoch the run reported (results.json); last: the last epoch's.")
@click.option("--export", type=click.Path(file_okay=False), default=None, metavar="DIR",
              help="Also write per-sample predictions: <task>.npz per task, PNG masks for dense labelling "
                   "tasks, eval.json (docs/report.md).")
def evaluate(run_dir, split, checkpoint, export):
    """Re-evaluate a trained run (and its STL baselines) and compare with the figures it recorded."""
    from .evaluation import evaluate_run, render

    out = evaluate_run(run_dir, split, checkpoint, export)
    click.echo(render(out))
    if export is not None:
        click.echo(f"wrote predictions to {export}")


def _complete_kind(ctx, param, incomplete):
    """Shell completion of ``mtl list KIND``: the plural kind names (no plugin is loaded)."""
    return [k for k in KIND_ALIASES if k.startswith(incomplete)]


@cli.command(name="list")
@click.argument("kind", required=False, shell_complete=_complete_kind)
@click.option("--disable", multiple=True, metavar="NAME", help="Block a plugin or component first.")
def list_components(kind, disable):
    """List registered components (architectures, weightings, domains, ...) with their parameters."""
    from .params import flatten
    from .registry import load

    registry, _ = load(disable)
    kinds = registry.kinds()
    if kind is not None:
        wanted = KIND_ALIASES.get(kind, kind)
        if wanted not in kinds:
            from .params import did_you_mean

            names = sorted(set(kinds) | set(KIND_ALIASES))
            raise UserError(f"mtl list: unknown kind {kind!r}{did_you_mean(kind, names)}; "
                            f"kinds: {', '.join(names)}")
        kinds = [wanted]
    for k in kinds:
        click.echo(f"{k}s:" if "." not in k else f"{k} choices:")
        for comp in registry.components(k):
            click.echo(f"  {comp.name}  [plugin {comp.plugin}: {comp.module}]")
            if comp.summary:
                click.echo(f"      {comp.summary}")
            for p in flatten(comp.params):
                default = "required" if p.required else repr(p.default)
                click.echo(f"      {p.name}: {p.describe_allowed()} = {default}  {p.help}")
        click.echo("")


@cli.command()
def plugins():
    """List the loaded plugins and what each registered."""
    import importlib.metadata

    from .registry import ENTRY_POINT_GROUP, load

    registry, pm = load()
    dists = {ep.name: getattr(ep.dist, "name", "?") for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}
    for name, _plugin in sorted(pm.list_name_plugin()):
        owned = [f"{k}:{c.name}" for k in registry.kinds() for c in registry.components(k) if c.plugin == name]
        hooks = sorted(h.name for h in pm.get_hookcallers(_plugin) or [])
        click.echo(f"{name}  (distribution {dists.get(name, '-')})")
        click.echo(f"    components: {', '.join(owned) or '-'}")
        click.echo(f"    hooks: {', '.join(hooks)}")


def main(argv=None) -> None:
    """Entry point of the ``mtl`` console script."""
    try:
        cli.main(args=argv, prog_name="mtl", standalone_mode=False)
    except UserError as exc:
        if os.environ.get("RANK", "0") == "0":  # under torchrun, rank 0 says it, once
            click.echo(f"mtl: error: {exc}", err=True)
        sys.exit(2)
    except _NO_ARGS_IS_HELP as exc:  # bare `mtl`: show the help
        click.echo(exc.ctx.get_help())
        sys.exit(0)
    except click.ClickException as exc:
        click.echo(f"mtl: error: {exc.format_message()}", err=True)
        sys.exit(2)
    except click.exceptions.Abort:
        click.echo("mtl: aborted", err=True)
        sys.exit(130)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("mtl: interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":  # pragma: no cover
    main()
