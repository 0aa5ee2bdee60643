"""Planning a sweep: the ``--grid``, ``--cell`` and ``--seeds`` parsed, the grid's Cartesian product
and the extra cells expanded into cells (each with its overrides, resolved config and defining
config hash, all validated before anything trains), and the index of the run directories already under ``OUT/runs/`` by that hash,
which tells each cell whether to skip (finished), resume, restart or train."""
from __future__ import annotations

import itertools
import json
import re
from pathlib import Path
from typing import Iterable

from mtl_platform import runs
from mtl_platform.config import config_hash, read_yaml
from mtl_platform.errors import UserError

RUNS_DIR = "runs"
# keys the sweep sets itself for every cell
_RESERVED = ("output.root", "output.name")
_MAX_NAME = 150


# -- parsing -----------------------------------------------------------------------------------
def _split_values(text: str, sep: str = ",") -> list[str]:
    """Split ``V1,V2,...`` on the ``sep`` outside brackets and quotes (``[0.9,0.99]`` is one value)."""
    values, current, depth, quote = [], [], 0, None
    for ch in text:
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth = max(depth - 1, 0)
        elif ch == sep and depth == 0:
            values.append("".join(current).strip())
            current = []
            continue
        current.append(ch)
    values.append("".join(current).strip())
    return values


def parse_grid(items: Iterable[str]) -> dict[str, list[str]]:
    """``["weighting.name=ew,gh", "optimizer.lr=1e-3,1e-2"]`` → ``{key: [values...]}``.

    Values stay strings: each cell applies them as ``--set KEY=VALUE`` (read as YAML there).
    Commas inside ``[...]``, ``{...}`` or quotes do not split (``optimizer.betas=[0.9,0.99]``).
    """
    grid: dict[str, list[str]] = {}
    for item in items:
        key, eq, rest = item.partition("=")
        key = key.strip()
        if not eq or not key or any(not part for part in key.split(".")):
            raise UserError(f"--grid {item!r}: expected KEY=V1,V2,..., e.g. --grid weighting.name=ew,gh")
        if not rest.strip():
            raise UserError(f"--grid {key}: no values given (expected {key}=V1,V2,...)")
        values = _split_values(rest)
        if any(v == "" for v in values):
            raise UserError(f"--grid {key}={rest}: empty value in the list")
        dup = next((v for i, v in enumerate(values) if v in values[:i]), None)
        if dup is not None:
            raise UserError(f"--grid {key}: value {dup!r} given twice")
        if key in grid:
            raise UserError(f"--grid {key}: given twice (list all its values in one --grid)")
        grid[key] = values
    return grid


CELL_EXAMPLE = "--cell 'weighting.name=equilibrium; domain.update=sequential'"


def parse_cells(items: Iterable[str]) -> list[list[tuple[str, str]]]:
    """``["weighting.name=equilibrium; domain.update=sequential"]`` → one list of (key, value)
    pairs per ``--cell``, in the order given.

    Each is one extra cell: CONFIG, then the ``--set``s, then these assignments (so a key also
    in ``--set`` takes the cell's value), never the grid's values. Values stay strings, applied
    as ``--set KEY=VALUE``; a ``;`` inside ``[...]``, ``{...}`` or quotes does not split.
    """
    cells = []
    for item in items:
        if not item.strip():
            raise UserError(f"--cell {item!r}: no assignments; expected KEY=VALUE; KEY=VALUE, e.g. {CELL_EXAMPLE}")
        parts = _split_values(item, ";")
        if parts and parts[-1] == "" and len(parts) > 1:  # a trailing ';' is harmless
            parts.pop()
        pairs: list[tuple[str, str]] = []
        for part in parts:
            key, eq, value = part.partition("=")
            key, value = key.strip(), value.strip()
            if not eq or not key or any(not p for p in key.split(".")):
                raise UserError(f"--cell {item!r}: {part!r} is not KEY=VALUE; expected KEY=VALUE; KEY=VALUE, "
                                f"e.g. {CELL_EXAMPLE}")
            if not value:
                raise UserError(f"--cell {item!r}: {key} has no value")
            if any(key == k for k, _ in pairs):
                raise UserError(f"--cell {item!r}: {key} given twice")
            pairs.append((key, value))
        cells.append(pairs)
    return cells


def cell_text(pairs: list[tuple[str, str]]) -> str:
    """``weighting.name=equilibrium; domain.update=sequential``: a ``--cell`` as a reader sees it."""
    return "; ".join(f"{k}={v}" for k, v in pairs)


def parse_seeds(spec: str | None) -> list[int]:
    """``"0-4"`` → [0, 1, 2, 3, 4]; ``"0,2,5"`` → [0, 2, 5]; ranges and single seeds may mix
    (``"0-2,7"``). None or "" → [] (the config's own seed)."""
    if spec is None or not str(spec).strip():
        return []
    seeds: list[int] = []
    for part in str(spec).split(","):
        part = part.strip()
        m = re.fullmatch(r"(\d+)\s*-\s*(\d+)", part)
        if m:
            lo, hi = int(m.group(1)), int(m.group(2))
            if lo > hi:
                raise UserError(f"--seeds {spec}: range {part!r} runs backwards (write {hi}-{lo})")
            new = list(range(lo, hi + 1))
        elif re.fullmatch(r"\d+", part):
            new = [int(part)]
        else:
            raise UserError(f"--seeds {spec!r}: expected non-negative seeds like 0-4 or 0,2,5")
        for s in new:
            if s in seeds:
                raise UserError(f"--seeds {spec}: seed {s} given twice")
            seeds.append(s)
    return seeds


def _set_key(item: str) -> str:
    return item.partition("=")[0].strip()


def _yaml_str(value) -> str:
    """A string as a YAML scalar that ``--set`` reads back as exactly this string."""
    return json.dumps(str(value))


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_.=" else "_" for c in text)


def cell_name(stem: str, assignment: list[tuple[str, str]]) -> str:
    """``<stem>__weighting.name=gh__train.seed=3``, filesystem-safe and of bounded length."""
    name = _safe("__".join([stem] + [f"{k.rsplit('.', 1)[-1] if k == 'train.seed' else k}={v}"
                                     for k, v in assignment]))
    if len(name) > _MAX_NAME:
        import hashlib

        name = name[:_MAX_NAME - 9] + "_" + hashlib.sha256(name.encode()).hexdigest()[:8]
    return name


# -- run directories ---------------------------------------------------------------------------
def _finished(run_dir: Path) -> bool:
    try:
        json.loads((run_dir / runs.RESULTS_FILE).read_text())
    except (OSError, ValueError):
        return False
    return True


def _has_checkpoint(run_dir: Path) -> bool:
    from mtl_platform.stages.runner import PROGRESS_FILE

    return ((run_dir / runs.CONFIG_FILE).is_file()
            and ((run_dir / PROGRESS_FILE).is_file() or any(run_dir.rglob(runs.CHECKPOINT_FILE))))


def _index_runs(root: Path) -> dict[str, list[Path]]:
    """``{defining config hash: [run dirs, oldest first]}`` of the run directories under ``root``."""
    index: dict[str, list[Path]] = {}
    if not root.is_dir():
        return index
    for run_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        try:
            config = read_yaml(run_dir / runs.CONFIG_FILE)
            key = config_hash(config)
        except (UserError, OSError, KeyError, TypeError, AttributeError):
            continue  # not a run directory (or not one of ours)
        index.setdefault(key, []).append(run_dir)
    return index


def _pick(dirs: list[Path]) -> tuple[str, Path | None]:
    """What to do with a cell whose matching run dirs are ``dirs`` (oldest first):
    ("skip" | "resume" | "restart" | "train", run dir or None)."""
    for run_dir in reversed(dirs):
        if _finished(run_dir):
            return "skip", run_dir
    for run_dir in reversed(dirs):
        if _has_checkpoint(run_dir):
            return "resume", run_dir
    if dirs:
        return "restart", dirs[-1]
    return "train", None


# -- the cells ---------------------------------------------------------------------------------
def plan_cells(config_path, grid: dict[str, list[str]], seeds: list[int], out: Path,
               sets: Iterable[str] = (), extra: Iterable[list[tuple[str, str]]] = ()) -> list[dict]:
    """Every cell with its overrides and resolved config's defining hash; validates them all.

    The grid's cells (its Cartesian product × seeds; with no ``--grid``, CONFIG as it is ×
    seeds) come first, then each ``extra`` cell (:func:`parse_cells`) × seeds. An extra cell's
    ``extra`` is its :func:`cell_text` (None for a grid cell); one whose resolved config equals
    another cell's is refused."""
    from mtl_platform import session

    sets = list(sets)
    extra = [list(pairs) for pairs in extra]
    path = Path(config_path)
    read_yaml(path)  # a missing or malformed CONFIG is one line
    stem = path.stem
    fixed_keys = [_set_key(s) for s in sets]
    for key in list(grid) + fixed_keys:
        if key in _RESERVED:
            raise UserError(f"{key}: set by the sweep for each cell (choose the folder with --out)")
    for key in grid:
        if key in fixed_keys:
            raise UserError(f"{key}: given both as --grid and --set")
    for pairs in extra:
        for key, _ in pairs:
            if key in _RESERVED:
                raise UserError(f"--cell {key}: set by the sweep for each cell (choose the folder with --out)")
            if key == "train.seed" and seeds:
                raise UserError(f"--cell '{cell_text(pairs)}': train.seed given with --seeds too (use one of them)")
    if seeds and ("train.seed" in grid or "train.seed" in fixed_keys):
        raise UserError("train.seed: given with --seeds too (use one of them)")
    root = out / RUNS_DIR
    keys = list(grid)
    cells: list[dict] = []
    seen: dict[str, str] = {}
    todo = [(list(zip(keys, values)), None) for values in itertools.product(*(grid[k] for k in keys))]
    todo += [(pairs, cell_text(pairs)) for pairs in extra]
    for pairs, text in todo:
        for seed in (seeds or [None]):
            assignment = list(pairs)
            if seed is not None:
                assignment.append(("train.seed", str(seed)))
            if text is None:
                label = " ".join(f"{k}={v}" for k, v in assignment) or "(config as is)"
                name = cell_name(stem, assignment)
            else:
                label = f"--cell '{text}'" + (f" train.seed={seed}" if seed is not None else "")
                name = cell_name(f"{stem}__cell", assignment)
            cell_sets = (sets + [f"{k}={v}" for k, v in assignment]
                         + [f"output.root={_yaml_str(root)}", f"output.name={_yaml_str(name)}"])
            try:
                config = session.prepare(path, cell_sets, progress=False)[0]
            except UserError as exc:
                message = str(exc)
                for key, _ in pairs:  # a grid or cell value's error is about --grid or --cell, not --set
                    flag = "--grid" if text is None else "--cell"
                    message = re.sub(rf"^--set {re.escape(key)}\b", f"{flag} {key}", message)
                raise UserError(f"sweep cell {label}: {message}") from None
            key_hash = config_hash(config)
            if key_hash in seen:
                if text is None:
                    raise UserError(f"sweep cells {seen[key_hash]} and {label} are the same experiment "
                                    f"(their resolved configs are equal)")
                raise UserError(f"{label}: the same experiment as the sweep cell {seen[key_hash]} (their "
                                f"resolved configs are equal); drop one of them")
            seen[key_hash] = label
            cells.append({"name": name, "label": label, "overrides": dict(assignment), "extra": text,
                          "seed": config["train"]["seed"], "device": config["train"]["device"],
                          "sets": cell_sets, "hash": key_hash,
                          "status": "pending", "run_dir": None, "error": None})
    return cells
