"""bench/sweep_table.py (the study tables of docs/detection.md and docs/retrieval.md): the
figures it prints equal hand-computed means, standard deviations and Welch p-values."""
import importlib.util
import json
import statistics
from pathlib import Path

from scipy import stats

ROOT = Path(__file__).resolve().parents[2]


def load():
    spec = importlib.util.spec_from_file_location("sweep_table", ROOT / "bench" / "sweep_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fake_sweep(tmp_path, values):
    cells = []
    for (name, seed), ap in values.items():
        run = tmp_path / "runs" / f"{name}_{seed}"
        run.mkdir(parents=True)
        (run / "results.json").write_text(json.dumps({"test": {"detection": {"AP": ap, "AP50": 2 * ap}}}))
        cells.append({"status": "done", "run_dir": str(run),
                      "overrides": {"weighting.name": name, "train.seed": str(seed)}})
    cells.append({"status": "failed", "run_dir": None, "overrides": {"weighting.name": "gh", "train.seed": "9"}})
    (tmp_path / "sweep.json").write_text(json.dumps({"cells": cells}))
    return tmp_path


def test_rows_are_mean_std_and_welch_p_against_the_reference(tmp_path):
    """(and, with paired columns, the same-seed differences and their one-sample t-test)"""
    ew, gh = [0.20, 0.22, 0.25], [0.30, 0.26, 0.31]
    values = {**{("ew", s): v for s, v in enumerate(ew)}, **{("gh", s): v for s, v in enumerate(gh)}}
    module = load()
    groups = module.collect(fake_sweep(tmp_path, values), "detection", ["AP", "AP50"])
    assert groups["weighting.name=gh"]["AP"] == gh and groups["weighting.name=gh"]["seeds"] == [0, 1, 2]
    text = module.table(groups, ["AP", "AP50"], "weighting.name=ew")
    row = next(line for line in text.splitlines() if line.startswith("| weighting.name=gh "))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == f"{statistics.mean(gh):.3f} ± {statistics.stdev(gh):.3f}"
    assert cells[2] == f"{stats.ttest_ind(gh, ew, equal_var=False).pvalue:.2f}"
    assert cells[3] == f"{2 * statistics.mean(gh):.3f} ± {2 * statistics.stdev(gh):.3f}"
    assert cells[-1] == "0,1,2"
    reference = next(line for line in text.splitlines() if "(reference)" in line)
    assert reference.startswith("| weighting.name=ew (reference) ")


def test_paired_columns_are_the_same_seed_differences_and_their_t_test(tmp_path):
    ew, gh = [0.20, 0.02, 0.25], [0.21, 0.04, 0.26]   # seeds differ far more than the methods
    values = {**{("ew", s): v for s, v in enumerate(ew)}, **{("gh", s): v for s, v in enumerate(gh)}}
    module = load()
    groups = module.collect(fake_sweep(tmp_path, values), "detection", ["AP"])
    text = module.table(groups, ["AP"], "weighting.name=ew", with_paired=True)
    row = next(line for line in text.splitlines() if line.startswith("| weighting.name=gh "))
    cells = [c.strip() for c in row.strip("|").split("|")]
    diffs = [g - e for g, e in zip(gh, ew)]
    assert cells[2] == f"{stats.ttest_ind(gh, ew, equal_var=False).pvalue:.2f}"   # Welch: no difference seen
    assert cells[3] == f"{statistics.mean(diffs):+.3f}" == "+0.013"
    assert cells[4] == f"{stats.ttest_1samp(diffs, 0.0).pvalue:.2f}"
    assert float(cells[4]) < 0.1 < float(cells[2])


def test_per_seed_lists_every_run(tmp_path):
    values = {("ew", 0): 0.2, ("ew", 1): 0.02, ("gh", 1): 0.04}
    module = load()
    groups = module.collect(fake_sweep(tmp_path, values), "detection", ["AP"])
    lines = module.per_seed(groups, "AP").splitlines()
    assert lines[0] == "| group | seed 0 | seed 1 |"
    assert lines[2:] == ["| weighting.name=ew | 0.200 | 0.020 |", "| weighting.name=gh | – | 0.040 |"]
