"""``mtl sweep --cell``: extra cells beside the grid's product — their precedence over --set and
--grid, validation before anything trains, skip and resume by config hash, labels that tell
them apart in report.md and grid.md, duplicates and bad syntax one line with exit code 2."""
import json
import re
from pathlib import Path

import pytest
import yaml

from mtl_platform.cli import main
from mtl_platform.errors import UserError
from mtl_platform.sweep import parse_cells, run_sweep

from conftest import TINY, Recorder, assert_one_line_error, config_writer, run_dirs
from test_cli import run_cli

pytestmark = pytest.mark.usefixtures("one_thread")

LOW = "weighting.name=dwa; optimizer.lr=0.002"
HIGH = "weighting.name=dwa; optimizer.lr=0.003"


@pytest.fixture
def tiny(tmp_path):
    base = json.loads(json.dumps(TINY))
    base["train"]["epochs"] = 1
    return config_writer(base, tmp_path / "tiny.yaml", tmp_path / "plain_runs")()


def sweep(config, out, grid, seeds=(), cells=(), recorder=None, **kwargs):
    lines = []
    result = run_sweep(config, grid, list(seeds), out, progress=False, echo=lines.append,
                       extra_plugins=[recorder] if recorder else (), extra=parse_cells(cells), **kwargs)
    return result, [str(line) for line in lines]


def cell_lines(lines):
    return [line for line in lines if re.match(r"\[\d+/\d+\] ", line)]


# -- parsing -----------------------------------------------------------------------------------
def test_parse_cells():
    assert parse_cells([]) == []
    assert parse_cells([LOW, " train.epochs = 2 ;"]) == [
        [("weighting.name", "dwa"), ("optimizer.lr", "0.002")], [("train.epochs", "2")]]
    assert parse_cells(["optimizer.betas=[0.9;0.99]; domain.tasks='a;b'"]) == [
        [("optimizer.betas", "[0.9;0.99]"), ("domain.tasks", "'a;b'")]]
    for bad, message in [("", "no assignments"), ("  ", "no assignments"), ("weighting.name", "is not KEY=VALUE"),
                         ("=ew", "is not KEY=VALUE"), ("weighting..name=ew", "is not KEY=VALUE"),
                         ("weighting.name=ew;; optimizer.lr=1", "'' is not KEY=VALUE"),
                         ("weighting.name=", "weighting.name has no value"),
                         ("weighting.name=ew; weighting.name=dwa", "weighting.name given twice")]:
        with pytest.raises(UserError, match=message):
            parse_cells([bad])


# -- cells beside the grid ---------------------------------------------------------------------
def test_cells_train_beside_the_grid_with_distinct_labels_skip_and_resume(tiny, tmp_path):
    """Grid ew, dwa (lr 0.004 from --set) and two cells that are dwa at lr 0.002 and 0.003: the
    cells differ from each other and from the grid's dwa only in optimizer.lr, which is neither
    in the grid nor in a run's label, yet every group has its own label and grid.md row."""
    out = tmp_path / "sw"
    recorder = Recorder()
    result, lines = sweep(tiny, out, {"weighting.name": ["ew", "dwa"]}, [0], [LOW, HIGH], recorder,
                          sets=["optimizer.lr=0.004"])
    assert result["failed"] == 0 and recorder.starts == ["main"] * 4
    assert [line.split("  ")[1] for line in cell_lines(lines)] == [
        "weighting.name=ew train.seed=0", "weighting.name=dwa train.seed=0",
        f"--cell '{LOW}' train.seed=0", f"--cell '{HIGH}' train.seed=0"]

    record = json.loads((out / "sweep.json").read_text())
    assert record["extra_cells"] == [LOW, HIGH]
    assert [(c["extra"], c["overrides"]) for c in record["cells"]] == [
        (None, {"weighting.name": "ew", "train.seed": "0"}), (None, {"weighting.name": "dwa", "train.seed": "0"}),
        (LOW, {"weighting.name": "dwa", "optimizer.lr": "0.002", "train.seed": "0"}),
        (HIGH, {"weighting.name": "dwa", "optimizer.lr": "0.003", "train.seed": "0"})]
    configs = [yaml.safe_load((Path(c["run_dir"]) / "config.yaml").read_text()) for c in record["cells"]]
    # the cell's value wins over --set; the grid's cells keep --set
    assert [(c["weighting"]["name"], c["optimizer"]["lr"]) for c in configs] == [
        ("ew", 0.004), ("dwa", 0.004), ("dwa", 0.002), ("dwa", 0.003)]
    assert configs[2]["output"]["name"] == "tiny__cell__weighting.name=dwa__optimizer.lr=0.002__seed=0"

    report = json.loads((out / "report.json").read_text())
    labels = [g["label"] for g in report["groups"]]
    assert labels == ["hps + ew", "hps + dwa", f"hps + dwa [--cell {LOW}]", f"hps + dwa [--cell {HIGH}]"]
    assert [c["label"] for c in report["comparisons"]] == labels[1:]
    md = (out / "report.md").read_text()
    assert all(f"## {label} — " in md for label in labels)

    table = (out / "grid.md").read_text().splitlines()
    assert table[2] == "| · | weighting.name=ew | weighting.name=dwa |"
    head = table.index("| --cell (CONFIG and --set with these assignments, no grid value) | left accuracy |")
    rows = table[head + 2:head + 4]
    for row, group in zip(rows, report["groups"][2:]):
        mean = group["tasks"]["left"]["metrics"]["accuracy"]["mtl"]["mean"]
        assert row.startswith(f"| {group['label'][len('hps + dwa [--cell '):-1]} | {mean:.4f}")
    assert rows[0] != rows[1] and len(table) == head + 4

    # again: everything skipped; an interrupted cell is resumed by its config hash, only it
    dirs = run_dirs(out / "runs")
    cut = Path(record["cells"][3]["run_dir"])
    (cut / "results.json").unlink()
    recorder.starts.clear()
    result, lines = sweep(tiny, out, {"weighting.name": ["ew", "dwa"]}, [0], [LOW, HIGH], recorder,
                          sets=["optimizer.lr=0.004"])
    assert recorder.starts == ["main"] and result["failed"] == 0 and run_dirs(out / "runs") == dirs
    assert sorted(line.split("  ")[0][6:] for line in cell_lines(lines)) == [
        "skipped", "skipped", "skipped", "trained (resumed)"]
    assert f"trained (resumed)  --cell '{HIGH}' train.seed=0  -> {cut}" in "\n".join(lines)


def test_cells_without_a_grid_run_beside_the_config_as_is(tiny, tmp_path):
    out = tmp_path / "sw"
    main(["sweep", str(tiny), "--cell", "optimizer.lr=0.002", "--seeds", "0-1", "--out", str(out), "--no-progress"])
    record = json.loads((out / "sweep.json").read_text())
    assert [(c["extra"], c["seed"]) for c in record["cells"]] == [
        (None, 0), (None, 1), ("optimizer.lr=0.002", 0), ("optimizer.lr=0.002", 1)]
    report = json.loads((out / "report.json").read_text())
    assert [(g["label"], g["seeds"]) for g in report["groups"]] == [
        ("hps + ew", [0, 1]), ("hps + ew [--cell optimizer.lr=0.002]", [0, 1])]
    table = (out / "grid.md").read_text()
    assert "| (CONFIG as is) | " in table and "| optimizer.lr=0.002 | " in table


# -- bad input ---------------------------------------------------------------------------------
GRID = ["--grid", "weighting.name=ew,dwa"]
BAD = {
    "empty": (GRID + ["--cell", ""], r"--cell '': no assignments"),
    "no '='": (GRID + ["--cell", "weighting.name"], r"--cell 'weighting\.name': 'weighting\.name' is not KEY=VALUE"),
    "no value": (GRID + ["--cell", "weighting.name=; optimizer.lr=1"], r"weighting\.name has no value"),
    "key twice": (GRID + ["--cell", "optimizer.lr=1; optimizer.lr=2"], r"optimizer\.lr given twice"),
    "unknown key": (GRID + ["--cell", "weighting.nmae=ew"], r"sweep cell --cell 'weighting\.nmae=ew': "
                                                             r"--cell weighting\.nmae: unknown key"),
    "bad value": (GRID + ["--cell", "weighting.name=nope"], r"unknown weighting 'nope'"),
    "output key": (GRID + ["--cell", "output.root=x"], r"--cell output\.root: set by the sweep"),
    "seed with --seeds": (["--seeds", "0-1", "--cell", "train.seed=3"], r"train\.seed given with --seeds"),
    "a grid cell again": (GRID + ["--cell", "weighting.name=ew"],
                          r"^mtl: error: --cell 'weighting\.name=ew': the same experiment as the sweep cell "
                          r"weighting\.name=ew \(their resolved configs are equal\)"),
    "a grid cell again, spelt otherwise": (GRID + ["--cell", "weighting.name=dwa; optimizer.lr=1.0e-3"],
                                           r"the same experiment as the sweep cell weighting\.name=dwa"),
    "a cell twice": (GRID + ["--cell", "optimizer.lr=0.01", "--cell", "optimizer.lr=1e-2"],
                     r"--cell 'optimizer\.lr=1e-2': the same experiment as the sweep cell "
                     r"--cell 'optimizer\.lr=0\.01'"),
    "a cell twice with seeds": (["--seeds", "0-1", "--cell", "optimizer.lr=0.01", "--cell", "optimizer.lr=0.01"],
                                r"--cell 'optimizer\.lr=0\.01' train\.seed=0: the same experiment"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_cells_are_one_line_exit_2_nothing_written(case, tiny, tmp_path, capsys):
    extra, pattern = BAD[case]
    out = tmp_path / "sw"
    code, stdout, err = run_cli(["sweep", str(tiny), "--out", str(out), "--no-progress"] + extra, capsys)
    assert_one_line_error(code, stdout, err, pattern)
    assert not out.exists() and not (tmp_path / "plain_runs").exists()
