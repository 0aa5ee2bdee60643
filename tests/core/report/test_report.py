"""Tests of the safe-MTL report (DESIGN.md §7)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from scipy import stats

from mtl_platform import report
from mtl_platform.errors import UserError

SPEC = {
    "left": {
        "accuracy": {"higher_is_better": True, "in_delta_p": True},
        "loss": {"higher_is_better": False, "in_delta_p": False},
    },
    "right": {
        "accuracy": {"higher_is_better": True, "in_delta_p": True},
        "loss": {"higher_is_better": False, "in_delta_p": False},
    },
}
# STL accuracies (left, right) per seed; each seed is compared against its own STL.
STL_ACC = {0: (0.80, 0.50), 1: (0.50, 0.80), 2: (0.40, 0.40)}
# Group A: relative Δ (left, right) per seed: (5 %, 0 %), (0 %, 5 %), (5 %, −5 %)
#   -> Δp per seed 2.5, 2.5, 0; η per seed 100, 100, 50.
A_ACC = {0: (0.84, 0.50), 1: (0.50, 0.84), 2: (0.42, 0.38)}
# Group B: relative Δ per seed: (0, −10 %), (0, −5 %), (0, −10 %) -> Δp −5, −2.5, −5; η 50 each.
B_ACC = {0: (0.80, 0.45), 1: (0.50, 0.76), 2: (0.40, 0.36)}


def _result(group, label, seed, acc, stl_acc=None, epoch=9):
    def scores(a, loss):
        return {"left": {"accuracy": a[0], "loss": loss}, "right": {"accuracy": a[1], "loss": loss}}

    return {
        "run_dir": f"runs/{label}_{seed}",
        "config_name": "quickstart",
        "group": group,
        "label": label,
        "seed": seed,
        "select": "last",
        "epoch": epoch,
        "spec": SPEC,
        "mtl": scores(acc, 0.35),
        "stl": None if stl_acc is None else scores(stl_acc, 0.30),  # loss Δ = −0.05: UNSAFE, not in Δp
    }


def _results(seeds=(0, 1, 2)):
    return [_result("aaa111", "hps + ew", s, A_ACC[s], STL_ACC[s]) for s in seeds] + [
        _result("bbb222", "hps + mgda", s, B_ACC[s], STL_ACC[s]) for s in seeds
    ]


@pytest.fixture
def built():
    return report.build_report(_results())


def test_build_report_groups_and_metadata(built):
    a, b = built["groups"]
    assert (a["label"], b["label"]) == ("hps + ew", "hps + mgda")
    assert a["config_name"] == "quickstart"
    assert a["seeds"] == [0, 1, 2]
    assert a["run_dirs"] == ["runs/hps + ew_0", "runs/hps + ew_1", "runs/hps + ew_2"]
    assert a["select"] == "last" and a["epochs"] == [9, 9, 9]
    json.dumps(built)  # JSON-serialisable


def test_build_report_per_metric_values(built):
    left = built["groups"][0]["tasks"]["left"]["metrics"]["accuracy"]
    # MTL left accuracy 0.84, 0.50, 0.42: mean 0.5867; STL 0.80, 0.50, 0.40: mean 0.5667
    assert left["mtl"]["mean"] == pytest.approx((0.84 + 0.50 + 0.42) / 3)
    assert left["mtl"]["std"] == pytest.approx(stats.tstd([0.84, 0.50, 0.42]))
    assert left["stl"]["mean"] == pytest.approx((0.80 + 0.50 + 0.40) / 3)
    # Per-seed Δ 0.04, 0, 0.02: mean 0.02, sample std 0.02
    assert left["delta"]["mean"] == pytest.approx(0.02)
    assert left["delta"]["std"] == pytest.approx(0.02)
    assert left["safe"] is True and left["in_delta_p"] is True

    loss = built["groups"][0]["tasks"]["left"]["metrics"]["loss"]
    assert loss["delta"]["mean"] == pytest.approx(-0.05) and loss["safe"] is False
    assert loss["in_delta_p"] is False

    right_b = built["groups"][1]["tasks"]["right"]["metrics"]["accuracy"]
    assert right_b["delta"]["mean"] == pytest.approx((-0.05 - 0.04 - 0.04) / 3)
    assert right_b["safe"] is False


def test_build_report_per_task_delta_p_and_eta(built):
    a, b = built["groups"]
    # Relative Δ of "left" in group A per seed: 5, 0, 5 % -> mean 3.333, std 2.887
    assert a["tasks"]["left"]["relative_delta_percent"]["mean"] == pytest.approx(10 / 3)
    assert a["tasks"]["left"]["relative_delta_percent"]["std"] == pytest.approx(stats.tstd([5, 0, 5]))

    # Δp per seed 2.5, 2.5, 0: mean 5/3, std √(25/12) = 1.4434; t = 2, df 2 -> p = 1 − 2/√6
    dp = a["delta_p_percent"]
    assert dp["per_seed"] == pytest.approx([2.5, 2.5, 0.0])
    assert dp["mean"] == pytest.approx(5 / 3)
    assert dp["std"] == pytest.approx((25 / 12) ** 0.5)
    assert dp["p_value"] == pytest.approx(1 - 2 / 6**0.5)
    # η per seed 100, 100, 50
    assert a["eta_percent"]["per_seed"] == pytest.approx([100, 100, 50])
    assert a["eta_percent"]["mean"] == pytest.approx(250 / 3)
    assert a["eta_percent"]["std"] == pytest.approx(stats.tstd([100, 100, 50]))

    assert b["delta_p_percent"]["per_seed"] == pytest.approx([-5.0, -2.5, -5.0])
    assert b["eta_percent"]["mean"] == pytest.approx(50.0) and b["eta_percent"]["std"] == 0.0

    # η of the mean Δ: A's right accuracy has Δ 0, +0.04, −0.02 (mean +0.0067: safe, in 2 of
    # 3 seeds), its left one +0.04, 0, +0.02 (3 of 3): both rows safe -> 100, not the 83 above
    assert a["eta_of_mean_percent"] == pytest.approx(100.0)
    assert [a["tasks"][t]["metrics"]["accuracy"]["safe_seeds"] for t in ("left", "right")] == [3, 2]
    assert b["eta_of_mean_percent"] == pytest.approx(50.0)
    assert [b["tasks"][t]["metrics"]["accuracy"]["safe_seeds"] for t in ("left", "right")] == [3, 0]
    assert a["tasks"]["left"]["metrics"]["loss"]["safe_seeds"] == 0  # not in Δp: counted, not in η


def test_delta_p_is_per_seed_not_pooled(built):
    # Pooled means would give left (0.5867 − 0.5667)/0.5667 = 3.53 %, not the per-seed 3.33 %.
    assert built["groups"][0]["tasks"]["left"]["relative_delta_percent"]["mean"] != pytest.approx(
        100 * (1.76 / 3 - 1.70 / 3) / (1.70 / 3)
    )


def test_comparisons(built):
    (c,) = built["comparisons"]
    assert c["group"] == "bbb222" and c["baseline_group"] == "aaa111"
    assert c["delta_p_difference_percent"] == pytest.approx(-12.5 / 3 - 5 / 3)
    expected = stats.ttest_ind([-5, -2.5, -5], [2.5, 2.5, 0], equal_var=False).pvalue
    assert c["p_value"] == pytest.approx(expected)
    assert 0 < c["p_value"] < 0.05


def test_below_three_seeds_p_values_are_none():
    built = report.build_report(_results(seeds=(0, 1)))
    assert built["groups"][0]["delta_p_percent"]["p_value"] is None
    assert built["comparisons"][0]["p_value"] is None
    assert "(p = n/a)" in report.render_terminal(built)


def test_single_group_has_no_comparisons():
    built = report.build_report(_results()[:3])
    assert built["comparisons"] == []


def test_group_without_stl_reports_mtl_only():
    built = report.build_report([_result("ccc", "no baselines", s, A_ACC[s]) for s in (0, 1, 2)])
    g = built["groups"][0]
    row = g["tasks"]["left"]["metrics"]["accuracy"]
    assert row["mtl"]["mean"] == pytest.approx((0.84 + 0.50 + 0.42) / 3)
    assert row["stl"] is None and row["delta"] is None and row["safe"] is None
    assert g["delta_p_percent"] is None and g["eta_percent"] is None
    assert "Δp = n/a" in report.render_terminal(built)


def test_stl_values_all_zero_leave_delta_p_undefined_and_the_rest_reported():
    """A policy's success rate or a detector's AP can be 0 for every STL baseline at a small
    budget: Δp (a ratio to them) is undefined, the report says why and still gives Δ and η
    (before, building the report raised ValueError after training had finished)."""
    runs = [_result("zzz", "hps + ew", s, A_ACC[s], (0.0, 0.0)) for s in (0, 1)]
    built = report.build_report(runs)
    g = built["groups"][0]
    assert g["delta_p_percent"] is None and "seed(s) 0, 1" in g["delta_p_undefined"]
    assert g["eta_percent"]["mean"] == 100.0  # every Δ ≥ 0 against STL 0
    assert g["tasks"]["left"]["metrics"]["accuracy"]["delta"]["mean"] == pytest.approx((0.84 + 0.50) / 2)
    text = report.render_terminal(built)
    assert "Δp = n/a (every metric in Δp has an STL value of 0 in seed(s) 0, 1)" in text and "η = 100 %" in text


def test_different_specs_in_one_group_raise():
    results = _results()[:3]
    results[1] = {**results[1], "spec": {"left": SPEC["left"]}}
    with pytest.raises(ValueError, match="different task specs"):
        report.build_report(results)


def test_render_terminal(built):
    text = report.render_terminal(built)
    lines = text.splitlines()
    row_b = next(
        line for line in lines[lines.index(next(x for x in lines if x.startswith("hps + mgda"))):]
        if line.startswith("right") and "accuracy" in line
    )
    assert row_b.split()[-2:] == ["UNSAFE", "0/3"]
    assert "-0.04333 ± 0.0058" in row_b
    row_a = next(line for line in lines if line.startswith("left") and "accuracy ↑" in line)
    assert row_a.split()[-2:] == ["safe", "3/3"]
    assert "0.5867 ± 0.22" in row_a and "+0.02 ± 0.02" in row_a
    loss_rows = [line for line in lines if "loss ↓ (not in Δp)" in line]
    assert len(loss_rows) == 4 and all(line.endswith(" -") for line in loss_rows)  # η ignores them
    assert "0.35 ± 0 " in loss_rows[0]
    assert "Δp = +1.67 % ± 1.44 (p = 0.184)" in lines
    assert "η = 83 % ± 29 (mean ± std of the per-seed η); η of the mean Δ = 100 % (the safe column)" in lines
    assert "select: last, epoch 10" in lines
    assert "seeds: 0, 1, 2" in lines
    # The columns are aligned: every table row of a group puts "MTL" values at the same offset.
    header = next(line for line in lines if line.startswith("task"))
    assert header.index("MTL") == row_a.index("0.5867")


def test_render_terminal_single_seed_plain_values():
    built = report.build_report([_result("aaa111", "hps + ew", 0, A_ACC[0], STL_ACC[0], epoch=3)])
    text = report.render_terminal(built)
    assert "±" not in text
    assert "Δp = +2.50 % (p = n/a)" in text
    assert "η = 100 %" in text.splitlines()  # one seed: one η, no seed column
    assert "safe seeds" not in text and "η of the mean" not in text
    assert "select: last, epoch 4" in text
    assert built["groups"][0]["eta_of_mean_percent"] == built["groups"][0]["eta_percent"]["mean"]


ACC_ONLY = {t: {"accuracy": {"higher_is_better": True, "in_delta_p": True}} for t in ("left", "right")}


def test_multi_seed_eta_and_the_safe_column_can_disagree_and_both_are_shown():
    """Two seeds, STL 0.5 everywhere. ``left`` is safe by a small margin in seed 0 (Δ +0.0625)
    and unsafe by a large one in seed 1 (Δ −0.125): mean Δ −0.03125, UNSAFE, safe in 1 of 2
    seeds. ``right`` gains +0.0625 in both. Per-seed η: 100 and 50, so η = 75 ± 35.36; but only
    one of the two rows has a mean Δ ≥ 0, so η of the mean Δ = 50."""
    def run(seed, left, right):
        scores = {"left": {"accuracy": left}, "right": {"accuracy": right}}
        return {**_result("ddd444", "hps + ew", seed, (0.5, 0.5), (0.5, 0.5)), "spec": ACC_ONLY,
                "mtl": scores, "stl": {"left": {"accuracy": 0.5}, "right": {"accuracy": 0.5}}}

    built = report.build_report([run(0, 0.5625, 0.5625), run(1, 0.375, 0.5625)])
    (g,) = built["groups"]
    left, right = (g["tasks"][t]["metrics"]["accuracy"] for t in ("left", "right"))
    assert left["delta"]["mean"] == -0.03125 and left["safe"] is False and left["safe_seeds"] == 1
    assert right["delta"]["mean"] == 0.0625 and right["safe"] is True and right["safe_seeds"] == 2
    assert g["eta_percent"]["per_seed"] == [100.0, 50.0]
    assert g["eta_percent"]["mean"] == 75.0 and g["eta_percent"]["std"] == pytest.approx(25 * 2 ** 0.5)
    assert g["eta_of_mean_percent"] == 50.0

    lines = report.render_terminal(built).splitlines()
    assert lines[1].split() == ["task", "metric", "MTL", "STL", "Δ", "safe", "safe", "seeds"]
    assert lines[2].split()[-2:] == ["UNSAFE", "1/2"] and lines[3].split()[-2:] == ["safe", "2/2"]
    assert "η = 75 % ± 35 (mean ± std of the per-seed η); η of the mean Δ = 50 % (the safe column)" in lines
    md = report.render_markdown(built)
    assert "| left | accuracy ↑ | 0.4688 ± 0.13 | 0.5 ± 0 | -0.03125 ± 0.13 | UNSAFE | 1/2 |" in md
    assert "- η = 75 % ± 35 (mean ± std of the per-seed η); η of the mean Δ = 50 % (the safe column)" in md
    saved = json.loads(json.dumps(built))  # report.json holds both, under these names
    assert saved["groups"][0]["eta_of_mean_percent"] == 50.0 and saved["groups"][0]["eta_percent"]["mean"] == 75.0


def test_render_markdown(built):
    md = report.render_markdown(built)
    assert "| task | metric | MTL | STL | Δ | safe | safe seeds |" in md
    assert "|---|---|---|---|---|---|---|" in md
    assert md.count("| task | metric |") == 2
    assert any(l.startswith("| right | accuracy ↑ |") and l.endswith("| UNSAFE | 0/3 |") for l in md.splitlines())
    assert "- Δp = +1.67 % ± 1.44 (p = 0.184)" in md


def test_write_report_writes_all_files(built, tmp_path):
    paths = report.write_report(built, tmp_path / "out")
    # two tasks and several runs: the Pareto plot too (tests/core/report/test_pareto.py)
    assert [p.name for p in paths] == ["report.md", "report.json", "report_pareto.png", "report_delta.png"]
    assert all(p.is_file() for p in paths)
    assert json.loads(paths[1].read_text()) == json.loads(json.dumps(built))
    assert paths[3].read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert paths[0].read_text() == report.render_markdown(built)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(p.name for p in paths)  # no temp files


def test_write_report_rejects_unknown_format(built, tmp_path):
    with pytest.raises(ValueError, match="'pdf'.*md, json, png"):
        report.write_report(built, tmp_path, formats=("md", "pdf"))
    assert list(tmp_path.iterdir()) == []


def test_plot_without_stl_still_writes_png(tmp_path):
    built = report.build_report([_result("ccc", "no baselines", 0, A_ACC[0])])
    (path,) = report.write_report(built, tmp_path, formats=("png",))
    assert path.read_bytes().startswith(b"\x89PNG")


def test_import_does_not_load_matplotlib():
    code = "import sys, mtl_platform.report; assert 'matplotlib' not in sys.modules, 'matplotlib imported'"
    root = Path(__file__).resolve().parents[3]
    done = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_load_results_roundtrip(tmp_path):
    run = tmp_path / "run0"
    run.mkdir()
    (run / "results.json").write_text(json.dumps(_results()[0]))
    assert report.load_results([run]) == [_results()[0]]


def test_load_results_missing_dir_is_user_error(tmp_path):
    missing = tmp_path / "no_such_run"
    with pytest.raises(UserError) as err:
        report.load_results([missing])
    message = str(err.value)
    assert str(missing / "results.json") in message and "\n" not in message


def test_load_results_bad_json_is_user_error(tmp_path):
    (tmp_path / "results.json").write_text("{not json")
    with pytest.raises(UserError, match="results.json"):
        report.load_results([tmp_path])
    (tmp_path / "results.json").write_text("{}")
    with pytest.raises(UserError, match="lack"):
        report.load_results([tmp_path])


def test_gradient_conflict_rate_comes_from_each_runs_diagnostics(tmp_path):
    runs = []
    for seed, flags in ((0, [0.0, 1.0, 0.0, 0.0]), (1, [1.0, 1.0, 0.0, 0.5])):
        run = tmp_path / f"run{seed}"
        run.mkdir()
        result = _result("g1", "A", seed, (0.9, 0.9), stl_acc=(0.8, 0.8))
        result["run_dir"] = str(run)
        (run / "results.json").write_text(json.dumps(result))
        (run / "diagnostics.jsonl").write_text("".join(json.dumps({"conflict": f, "step": i}) + "\n"
                                                       for i, f in enumerate(flags)))
        runs.append(run)
    rep = report.build_report(report.load_results(runs))
    conflict = rep["groups"][0]["conflict_percent"]
    assert conflict["mean"] == pytest.approx((25.0 + 75.0) / 2)  # 1 of 4 steps, then 3 of 4
    assert "gradient conflict: 50.0 ± " in report.render_terminal(rep)
    (runs[1] / "diagnostics.jsonl").unlink()
    assert report.build_report(report.load_results(runs))["groups"][0]["conflict_percent"] is None


def test_parameter_counts_render_with_the_parts_a_run_recorded():
    """A results file without some parts (an older version's, or a domain's own model) renders
    what it has instead of failing the whole report (the MT10 sweep's report hit KeyError 'shared')."""
    from mtl_platform.report.render import _parameter_text

    assert _parameter_text({"total": 1234}) == "parameters 1,234"
    assert _parameter_text({"total": 20, "shared": 12, "tasks": {"a": 4, "b": 4}, "frozen": 3}) == \
        "parameters 20 (shared 12; a 4, b 4; frozen 3)"
    assert _parameter_text({"total": 9, "actor": {}, "critic": {}}) == "parameters 9"
