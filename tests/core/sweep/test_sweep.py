"""``mtl sweep``: grid × seeds as ordinary runs, finished cells skipped, interrupted ones
resumed, parallel workers equal to sequential, failures recorded, one aggregated report,
bad input one line and exit code 2 with nothing written."""
import json
import re
from pathlib import Path

import pytest
import yaml

from mtl_platform.cli import main
from mtl_platform.errors import UserError
from mtl_platform.sweep import parse_grid, parse_seeds, run_sweep

from conftest import TINY, Recorder, assert_one_line_error, config_writer, run_dirs
from test_cli import run_cli

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def tiny(tmp_path):
    base = json.loads(json.dumps(TINY))
    base["train"]["epochs"] = 1
    return config_writer(base, tmp_path / "tiny.yaml", tmp_path / "plain_runs")()


def sweep(config, out, grid, seeds=(), recorder=None, **kwargs):
    lines = []
    result = run_sweep(config, grid, list(seeds), out, progress=kwargs.pop("progress", False),
                       echo=lines.append, extra_plugins=[recorder] if recorder else (), **kwargs)
    return result, [str(line) for line in lines]


def cell_lines(lines):
    return [line for line in lines if re.match(r"\[\d+/\d+\] ", line)]


def results_of(run_dir):
    return json.loads((run_dir / "results.json").read_text())


# -- parsing -----------------------------------------------------------------------------------
def test_parse_grid():
    assert parse_grid([]) == {}
    assert parse_grid(["weighting.name=ew,gh", " optimizer.lr = 1e-3, 0.01"]) == {
        "weighting.name": ["ew", "gh"], "optimizer.lr": ["1e-3", "0.01"]}
    assert parse_grid(["optimizer.betas=[0.9,0.99],[0.5,0.9]"]) == {
        "optimizer.betas": ["[0.9,0.99]", "[0.5,0.9]"]}
    assert parse_grid(["domain.tasks=[left],'a,b'"]) == {"domain.tasks": ["[left]", "'a,b'"]}
    assert parse_grid(["train.epochs=3"]) == {"train.epochs": ["3"]}
    for bad, message in [("weighting.name", "expected KEY=V1,V2"), ("=ew,gh", "expected KEY=V1,V2"),
                         ("weighting..name=ew", "expected KEY=V1,V2"), ("weighting.name=", "no values"),
                         ("weighting.name= ", "no values"), ("weighting.name=ew,,gh", "empty value"),
                         ("weighting.name=ew,", "empty value"), ("weighting.name=ew,ew", "given twice")]:
        with pytest.raises(UserError, match=message):
            parse_grid([bad])
    with pytest.raises(UserError, match="given twice"):
        parse_grid(["weighting.name=ew", "weighting.name=gh"])


def test_parse_seeds():
    assert parse_seeds(None) == [] and parse_seeds("") == []
    assert parse_seeds("0-4") == [0, 1, 2, 3, 4]
    assert parse_seeds("0,2,5") == [0, 2, 5]
    assert parse_seeds(" 3 ") == [3]
    assert parse_seeds("0-2, 7") == [0, 1, 2, 7]
    assert parse_seeds("5-5") == [5]
    for bad, message in [("4-0", "backwards"), ("a", "expected"), ("1,,2", "expected"), ("-1", "expected"),
                         ("0-", "expected"), ("1.5", "expected"), ("0-2,2", "twice"), ("1,1", "twice")]:
        with pytest.raises(UserError, match=message):
            parse_seeds(bad)


# -- grid × seeds, skip, resume, report ----------------------------------------------------------
def test_grid_times_seeds_skip_resume_and_report(tiny, tmp_path):
    out = tmp_path / "sw"
    grid = {"weighting.name": ["ew", "dwa"]}
    recorder = Recorder()
    result, lines = sweep(tiny, out, grid, [0, 1], recorder, progress=True)
    assert result["failed"] == 0 and recorder.starts == ["main"] * 4
    assert [line.split()[1] for line in cell_lines(lines)] == ["trained"] * 4
    dirs = run_dirs(out / "runs")
    assert len(dirs) == 4
    seen = set()
    for run_dir in dirs:
        config = yaml.safe_load((run_dir / "config.yaml").read_text())
        name, seed = config["weighting"]["name"], config["train"]["seed"]
        seen.add((name, seed))
        assert config["output"] == {"root": str(out / "runs"), "name": f"tiny__weighting.name={name}__seed={seed}"}
        assert config["optimizer"]["lr"] == 1e-3 and config["train"]["epochs"] == 1  # the rest of CONFIG
        assert results_of(run_dir)["seed"] == seed
    assert seen == {("ew", 0), ("ew", 1), ("dwa", 0), ("dwa", 1)}

    record = json.loads((out / "sweep.json").read_text())
    assert record["grid"] == grid and record["seeds"] == [0, 1]
    assert [(c["overrides"], c["status"]) for c in record["cells"]] == [
        ({"weighting.name": w, "train.seed": str(s)}, "done") for w in ("ew", "dwa") for s in (0, 1)]
    assert sorted(c["run_dir"] for c in record["cells"]) == sorted(str(d) for d in dirs)

    # one report group per grid value, its two seeds aggregated as mean ± std
    report = json.loads((out / "report.json").read_text())
    assert [(g["label"], g["seeds"]) for g in report["groups"]] == [("hps + ew", [0, 1]), ("hps + dwa", [0, 1])]
    md = (out / "report.md").read_text()
    assert md.count("## hps + ") == 2 and re.search(r"\| left \| accuracy ↑ \| [0-9.e-]+ ± ", md)
    assert (out / "report_delta.png").exists()
    # the grid as one table: a column per weighting, left accuracy mean ± std over the seeds
    table = (out / "grid.md").read_text().splitlines()
    assert table[2] == "| · | weighting.name=ew | weighting.name=dwa |"
    ew = [g for g in report["groups"] if g["label"] == "hps + ew"][0]["tasks"]["left"]["metrics"]["accuracy"]["mtl"]
    assert table[4].startswith(f"| · | {ew['mean']:.4f} ± {ew['std']:.4f}")
    dwa = [g for g in report["groups"] if g["label"] == "hps + dwa"][0]["tasks"]["left"]["metrics"]["accuracy"]["mtl"]
    second = table[4].split(" | ")[2]  # dwa's cell: its mean and its gain over the first column (ew)
    assert second.startswith(f"{dwa['mean']:.4f} ± ") and f"vs ew: {dwa['mean'] - ew['mean']:+.4f}" in second
    before = {d: results_of(d) for d in dirs}
    mtimes = {d: (d / "results.json").stat().st_mtime_ns for d in dirs}

    # the same command again trains nothing
    recorder.starts.clear()
    result, lines = sweep(tiny, out, grid, [0, 1], recorder)
    assert recorder.starts == [] and result["failed"] == 0
    assert [line.split()[1] for line in cell_lines(lines)] == ["skipped"] * 4
    assert run_dirs(out / "runs") == dirs
    assert {d: (d / "results.json").stat().st_mtime_ns for d in dirs} == mtimes

    # an interrupted cell (no results.json, checkpoint kept) is resumed, only it
    cut = next(d for d in dirs if d.name.endswith("dwa__seed_0"))
    (cut / "results.json").unlink()
    recorder.starts.clear()
    result, lines = sweep(tiny, out, grid, [0, 1], recorder)
    assert recorder.starts == ["main"]
    assert [line for line in cell_lines(lines) if "trained" in line] == [
        f"[4/4] trained (resumed)  weighting.name=dwa train.seed=0  -> {cut}"]
    assert run_dirs(out / "runs") == dirs and results_of(cut)["test"] == before[cut]["test"]

    # one stopped before its first checkpoint starts again from scratch, in the same folder
    cut = next(d for d in dirs if d.name.endswith("ew__seed_1") and "dwa" not in d.name)
    (cut / "results.json").unlink()
    (cut / "checkpoint.pt").unlink()
    recorder.starts.clear()
    result, lines = sweep(tiny, out, grid, [0, 1], recorder)
    assert recorder.starts == ["main"] and result["failed"] == 0
    assert [line.split("  ")[0][6:] for line in cell_lines(lines) if "trained" in line] == ["trained (restarted)"]
    assert run_dirs(out / "runs") == dirs and json.dumps(results_of(cut)["test"]) == json.dumps(before[cut]["test"])

    # a changed defining config is another cell: it trains in a new folder
    recorder.starts.clear()
    sweep(tiny, out, grid, [0], recorder, sets=["optimizer.lr=0.002"])
    assert recorder.starts == ["main"] * 2 and len(run_dirs(out / "runs")) == 6


def test_parallel_workers_give_the_sequential_results(tiny, tmp_path, monkeypatch):
    import mtl_platform.sweep.executors as executors

    monkeypatch.setattr(executors, "cores", lambda: 2)  # one torch thread per worker, as in this test
    grid = {"optimizer.lr": ["1e-3", "3e-3"]}
    seq, _ = sweep(tiny, tmp_path / "seq", grid, [0])
    par, lines = sweep(tiny, tmp_path / "par", grid, [0], workers=2)
    assert seq["failed"] == par["failed"] == 0 and len(cell_lines(lines)) == 2
    assert [c["overrides"] for c in seq["cells"]] == [c["overrides"] for c in par["cells"]]
    tests = [[json.dumps(results_of(Path(c["run_dir"]))["test"], sort_keys=True)
              for c in r["cells"]] for r in (seq, par)]
    assert tests[0] == tests[1] and tests[0][0] != tests[0][1]
    assert (tmp_path / "par" / "report.md").exists()


def test_a_failing_cell_is_recorded_and_the_others_finish(tiny, tmp_path, capsys):
    out = tmp_path / "sw"
    argv = ["sweep", str(tiny), "--grid", "optimizer.lr=1e30,1e-3", "--out", str(out), "--no-progress"]
    code, stdout, err = run_cli(argv, capsys)
    assert code == 1, stdout + err
    record = json.loads((out / "sweep.json").read_text())
    bad, good = record["cells"]
    assert (bad["status"], good["status"]) == ("failed", "done")
    assert "non-finite loss" in bad["error"] and "\n" not in bad["error"]
    assert re.search(r"failed +optimizer\.lr=1e30: non-finite loss", stdout)
    report = json.loads((out / "report.json").read_text())
    assert [g["run_dirs"] for g in report["groups"]] == [[good["run_dir"]]]
    # again: the finished cell is skipped, the failing one fails again in its own folder
    code, stdout, _ = run_cli(argv, capsys)
    assert code == 1 and "skipped  optimizer.lr=1e-3" in stdout and "failed   optimizer.lr=1e30" in stdout
    assert len(run_dirs(out / "runs")) == 2


# -- bad input ---------------------------------------------------------------------------------
BAD = {
    "no '='": (["--grid", "weighting.name"], r"--grid 'weighting\.name': expected KEY=V1,V2"),
    "no values": (["--grid", "weighting.name="], r"--grid weighting\.name: no values"),
    "unknown key": (["--grid", "weighting.nmae=ew,gh"], r"--grid weighting\.nmae: unknown key"),
    "unknown section": (["--grid", "trainer.epochs=1,2"], r"unknown section 'trainer'"),
    "bad value in a later cell": (["--grid", "weighting.name=ew,nope"], r"unknown weighting 'nope'"),
    "bad value type": (["--grid", "train.epochs=1,many"], r"train\.epochs: got 'many'"),
    "unknown --set key": (["--seeds", "0-1", "--set", "optimizer.learning_rate=1"],
                          r"--set optimizer\.learning_rate: unknown key"),
    "bad seeds": (["--seeds", "3-1"], r"--seeds 3-1: range '3-1' runs backwards"),
    "seeds not numbers": (["--seeds", "a,b"], r"--seeds 'a,b': expected"),
    "seed twice": (["--seeds", "0-1", "--set", "train.seed=3"], r"train\.seed: given with --seeds"),
    "output set": (["--seeds", "0-1", "--set", "output.root=x"], r"output\.root: set by the sweep"),
    "same experiment": (["--grid", "optimizer.lr=0.1,1e-1"], r"are the same experiment"),
    "workers 0": (["--grid", "weighting.name=ew,gh", "--workers", "0"], r"--workers 0: must be 1 or more"),
    "nothing to sweep": ([], r"nothing to sweep"),
    "missing config": (["--grid", "weighting.name=ew,gh"], r"config file not found"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_one_line_exit_2_nothing_written(case, tiny, tmp_path, capsys):
    extra, pattern = BAD[case]
    config = tmp_path / "missing.yaml" if case == "missing config" else tiny
    out = tmp_path / "sw"
    code, stdout, err = run_cli(["sweep", str(config), "--out", str(out), "--no-progress"] + extra, capsys)
    assert_one_line_error(code, stdout, err, pattern)
    assert not out.exists() and not (tmp_path / "plain_runs").exists()


def test_the_default_folder_is_runs_sweeps_stem(tiny, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result, _ = sweep(tiny, None, {}, [4])
    assert result["failed"] == 0 and result["cells"][0]["name"] == "tiny__seed=4"
    assert (tmp_path / "runs" / "sweeps" / "tiny" / "sweep.json").exists()
    assert len(run_dirs(tmp_path / "runs" / "sweeps" / "tiny" / "runs")) == 1
