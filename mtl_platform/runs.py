"""Run directories and their files (DESIGN.md §6, §10)."""
from __future__ import annotations

import datetime as _dt
import json
import os
from pathlib import Path

from .atomic import atomic_write_text, writes
from .errors import UserError

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.jsonl"
DIAGNOSTICS_FILE = "diagnostics.jsonl"
CHECKPOINT_FILE = "checkpoint.pt"
RESULTS_FILE = "results.json"
BASELINES_FILE = "baselines.json"


def create_run_dir(root: str | Path, name: str) -> Path:
    """A fresh ``root/<date>_<time>_<name>`` directory (suffixed if taken)."""
    root = Path(root)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"output.root: cannot create {root} ({exc.strerror})") from None
    stamp = _dt.datetime.now().strftime("%Y-%m-%d_%H%M%S")
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    for i in range(1000):
        path = root / (f"{stamp}_{safe}" + (f"_{i}" if i else ""))
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise UserError(f"output.root: could not create a new run directory in {root}")


def append_jsonl(path: Path, row: dict) -> None:
    if not writes():  # rank 0 writes a distributed run's files
        return
    with open(path, "a") as fh:
        fh.write(json.dumps(row, sort_keys=True) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def read_jsonl(path: Path) -> list[dict]:
    if not Path(path).exists():
        return []
    rows = []
    for line in Path(path).read_text().splitlines():
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                break  # a torn last line from a crash
    return rows


def truncate_jsonl(path: Path, keep: int) -> None:
    """Keep the first ``keep`` rows (a resume cuts rows written after its checkpoint)."""
    rows = read_jsonl(path)[:keep]
    atomic_write_text(Path(path), "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))


def write_json(path: Path, obj) -> None:
    atomic_write_text(Path(path), json.dumps(obj, indent=2, sort_keys=True) + "\n")
