"""``mtl eval RUN_DIR``: re-evaluate a trained run, and its STL baselines, from what its folder holds.

The model is rebuilt from the run's resolved ``config.yaml`` (domain, architecture, data split
seeded as in training), its weights loaded, and the domain's own ``evaluate`` run on the split.
``--checkpoint best`` (the default) loads the weights of the epoch the run reported — ``best.pt``
when it selected on validation, else ``model.pt`` — and compares with ``results.json``;
``last`` loads the last epoch's (``model.pt``, or ``checkpoint.pt`` of an unfinished run) and
compares with the last row of ``metrics.jsonl``. The STL baselines named in ``baselines.json``
are rebuilt from their cache entries (``config.yaml``, ``weights.pt``) and compared with the
figures the run copied. On the device and with the torch threads the run was trained with, the
figures are the same bit for bit for any domain whose evaluation draws no random numbers.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from . import registry as registry_mod
from . import runs
from .checkpoint import load, seed_everything
from .config import disabled_plugins, read_yaml, resolve
from .errors import UserError
from .experiment import build_architecture, build_domain, resolve_device

CHECKPOINTS = ("best", "last")
EVAL_FILE = "eval.json"


def build_model(config: dict, registry, weights: dict):
    """The run's domain and model (in eval mode, on the run's device) with ``weights`` loaded."""
    seed_everything(config["train"]["seed"], config["train"]["deterministic"])
    domain = build_domain(config, registry)
    model = build_architecture(config, registry, domain).to(resolve_device(config["train"]["device"]))
    try:
        model.load_state_dict(weights)
    except RuntimeError as exc:
        raise UserError(f"the saved weights do not fit the model its config builds ({str(exc).splitlines()[0]})") from None
    model.eval()
    return domain, model


def read_config(run_dir: Path):
    """``(config, registry)`` of a run folder, resolved as ``mtl train --resume`` resolves it."""
    raw = read_yaml(run_dir / runs.CONFIG_FILE)
    disabled = disabled_plugins(raw)
    registry, _ = registry_mod.load(disabled)
    return resolve(raw, registry), registry


def run_weights(run_dir: Path, config: dict, checkpoint: str, split: str) -> tuple[Path, dict | None, dict]:
    """``(file, recorded figures of split or None, weights)`` for ``--checkpoint``."""
    results_path = run_dir / runs.RESULTS_FILE
    if checkpoint == "best":
        if not results_path.is_file():
            raise UserError(f"mtl eval {run_dir}: the run has not finished (no {runs.RESULTS_FILE}); "
                            f"evaluate its last checkpoint with --checkpoint last")
        results = json.loads(results_path.read_text())
        best = run_dir / "best.pt"
        path = best if config["train"]["select"] == "val" and best.is_file() else run_dir / "model.pt"
        return path, results.get(split), load(path)
    rows = runs.read_jsonl(run_dir / runs.METRICS_FILE)
    if (run_dir / "model.pt").is_file():
        path = run_dir / "model.pt"
        return path, rows[-1].get(split) if rows else None, load(path)
    path = run_dir / runs.CHECKPOINT_FILE
    if not path.is_file():
        raise UserError(f"mtl eval {run_dir}: no weights to evaluate (neither model.pt nor {runs.CHECKPOINT_FILE})")
    state = load(path)
    at_epoch_end = state["batch"] == 0 and rows and rows[-1]["step"] == state["step"]
    return path, rows[-1].get(split) if at_epoch_end else None, state["model"]


def compare(evaluated: dict, recorded: dict | None) -> dict:
    """``{task: {metric: {evaluated, recorded, same}}}``; ``same`` is exact equality (NaN equals NaN)."""
    out = {}
    for task, values in evaluated.items():
        out[task] = {}
        for metric, value in values.items():
            before = (recorded or {}).get(task, {}).get(metric)
            same = None if before is None else (value == before or (math.isnan(value) and math.isnan(before)))
            out[task][metric] = {"evaluated": value, "recorded": before, "same": same}
    return out


def evaluate_run(run_dir: str | Path, split: str = "test", checkpoint: str = "best",
                 export: str | Path | None = None) -> dict:
    """Re-evaluate ``run_dir`` (and its STL baselines) on ``split``; with ``export``, also write the
    model's per-sample predictions there (``mtl_platform.export``). Returns what ``eval.json`` holds."""
    run_dir = Path(run_dir)
    if not (run_dir / runs.CONFIG_FILE).is_file():
        raise UserError(f"mtl eval {run_dir}: not a run directory (no {runs.CONFIG_FILE})")
    if (run_dir / "stages.json").is_file():
        raise UserError(f"mtl eval {run_dir}: a run of several stages (a searched architecture); mtl eval "
                        f"re-evaluates one-stage runs only")
    config, registry = read_config(run_dir)
    path, recorded, weights = run_weights(run_dir, config, checkpoint, split)
    domain, model = build_model(config, registry, weights)
    if export is not None:
        from .export import check_exportable

        check_exportable(domain)
    out = {"run_dir": str(run_dir), "split": split, "checkpoint": checkpoint, "weights": str(path),
           "mtl": compare(domain.evaluate(model, split), recorded), "stl": {}}
    baselines_path = run_dir / runs.BASELINES_FILE
    for task, entry in (json.loads(baselines_path.read_text()) if baselines_path.is_file() else {}).items():
        folder = Path(entry["path"])
        if not (folder / "weights.pt").is_file():
            out["stl"][task] = {"missing": f"cache entry {folder} is gone"}
            continue
        stl_config, stl_registry = read_config(folder)
        stl_domain, stl_model = build_model(stl_config, stl_registry, load(folder / "weights.pt"))
        figures = compare(stl_domain.evaluate(stl_model, split), {task: entry.get(split)} if entry.get(split) else None)
        out["stl"][task] = {"path": str(folder), "metrics": figures[task]}
    if export is not None:
        from .export import write_predictions

        out["export"] = write_predictions(domain, model, split, Path(export))
        runs.write_json(Path(export) / EVAL_FILE, out)
    return out


def render(out: dict) -> str:
    """The terminal table: per model, task and metric the evaluated and recorded figures."""
    lines = [f"{out['run_dir']}: split {out['split']}, checkpoint {out['checkpoint']} ({out['weights']})"]
    models = [("MTL", out["mtl"])] + [(f"STL {t}", {t: e["metrics"]}) for t, e in out["stl"].items() if "metrics" in e]
    rows = [("model", "task", "metric", "evaluated", "recorded", "")]
    for label, tasks in models:
        for task, metrics in tasks.items():
            for metric, f in metrics.items():
                verdict = {True: "same", False: "DIFFERS", None: "(nothing recorded)"}[f["same"]]
                rows.append((label, task, metric, repr(f["evaluated"]),
                             "-" if f["recorded"] is None else repr(f["recorded"]), verdict))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines += [f"STL {t}: {e['missing']}, not re-evaluated" for t, e in out["stl"].items() if "missing" in e]
    return "\n".join(lines)
