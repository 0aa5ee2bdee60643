"""The command line: bad input is one line and exit code 2 with nothing written;
listing, plugins, report; `mtl --help` and `mtl list` stay light."""
import json
import subprocess
import sys

import pytest

from mtl_platform.cli import main

from conftest import run_dirs


def run_cli(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


def ok(argv, capsys):
    try:
        main(argv)
    except SystemExit as exc:  # click's --help exits 0
        assert exc.code in (0, None)
    return capsys.readouterr().out


BAD_INPUTS = {
    "malformed YAML": (None, "domain:\n  name: multi_mnist\n   batch_size: 3\n", [],
                       r"malformed YAML at line 3"),
    "unknown component": ({"weighting": "gradnrom"}, None, [], r"unknown weighting 'gradnrom'"),
    "wrong type": ({"train.epochs": "many"}, None, [], r"train\.epochs: got 'many' \(str\), expected int"),
    "missing key": ({"domain": {"batch_size": 3}}, None, [], r"domain\.name: missing required key"),
    "unreadable data path": ({"domain.root": "/nonexistent/mnist"}, None, [],
                             r"domain\.root: /nonexistent/mnist is not a readable directory"),
    "unknown --set key": ({}, None, ["--set", "optimizer.learning_rate=0.1"],
                          r"--set optimizer\.learning_rate: unknown key"),
    "bad --set value": ({}, None, ["--set", "train.device=gpu"], r"--set train\.device: got 'gpu', allowed"),
    "unknown section": ({"trainer": {"epochs": 2}}, None, [], r"trainer: unknown section \(did you mean 'train'\?\)"),
    "missing config file": ("missing", None, [], r"config file not found"),
    "cuda without a GPU": ({"train.device": "cuda"}, None, [], r"train\.device: 'cuda' requested"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_one_line_exit_2_and_no_run_directory(case, write_config, tmp_path, capsys):
    import re

    import torch

    overrides, raw, extra, pattern = BAD_INPUTS[case]
    if case == "cuda without a GPU" and torch.cuda.is_available():
        pytest.skip("a GPU is present")
    if overrides == "missing":
        path = tmp_path / "missing.yaml"
    else:
        path = write_config(overrides, raw=raw)
    code, out, err = run_cli(["train", str(path), "--no-progress"] + extra, capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("mtl: error: ")
    assert re.search(pattern, lines[0]), lines[0]
    assert "Traceback" not in err + out
    assert run_dirs(tmp_path / "runs") == []


def test_usage_errors_are_one_line_too(capsys):
    code, _, err = run_cli(["train", "--bogus-flag"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "--bogus-flag" in err
    code, _, err = run_cli(["list", "weightnigs"], capsys)
    assert code == 2 and "did you mean 'weightings'" in err
    code, _, err = run_cli(["report", "/nonexistent/run"], capsys)
    assert code == 2 and "/nonexistent/run" in err and len(err.strip().splitlines()) == 1


def test_a_bad_resume_leaves_the_run_untouched(write_config, tmp_path, capsys):
    main_ok = ok(["train", str(write_config({"train.epochs": 1})), "--no-progress"], capsys)
    assert "results:" in main_ok
    (run_dir,) = run_dirs(tmp_path / "runs")
    before = {p.name: p.read_bytes() for p in run_dir.iterdir()}
    code, _, err = run_cli(["train", "--resume", str(run_dir), "--set", "train.epochs=3"], capsys)
    assert code == 2 and "--set cannot be combined with --resume" in err
    code, _, err = run_cli(["train", "--resume", str(tmp_path)], capsys)
    assert code == 2 and "not a run directory" in err
    assert {p.name: p.read_bytes() for p in run_dir.iterdir()} == before


def test_list_weightings_shows_parameters_and_plugin(capsys):
    out = ok(["list", "weightings"], capsys)
    for name in ("ew", "uw", "dwa"):
        assert f"  {name}  [plugin mtl_platform.weightings: mtl_platform_plugins.weightings.{name}]" in out
    assert "T: finite float > 0 = 2.0  softmax temperature" in out
    assert "init: finite float = 0.0" in out
    assert "architectures:" not in out


def test_list_all_and_plugins(capsys):
    out = ok(["list"], capsys)
    assert "architectures:" in out and "domains:" in out and "multi_mnist" in out
    out = ok(["plugins"], capsys)
    assert "mtl_platform.weightings  (distribution mtl-platform)" in out
    assert "weighting:dwa" in out


def test_report_of_two_seeds(write_config, tmp_path, capsys):
    for seed in (0, 1):
        ok(["train", str(write_config({"baselines": {"stl": True}, "train.epochs": 1, "train.seed": seed})),
            "--no-progress"], capsys)
    dirs = [str(d) for d in run_dirs(tmp_path / "runs")]
    out = ok(["report", *dirs, "--out", str(tmp_path / "rep")], capsys)
    assert "seeds: 0, 1" in out and "Δp =" in out and "η =" in out
    data = json.loads((tmp_path / "rep" / "report.json").read_text())
    (group,) = data["groups"]
    assert len(group["delta_p_percent"]["per_seed"]) == 2
    assert (tmp_path / "rep" / "report_delta.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("argv", [["--help"], ["list"], ["list", "weightings", "--help"], ["train", "--help"],
                                  ["sweep", "--help"]])
def test_help_and_list_do_not_import_heavy_stacks(argv):
    code = ("import sys\nfrom mtl_platform.cli import main\n"
            f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in ('matplotlib', 'mujoco', 'metaworld', 'gymnasium', 'ray') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"


def test_the_console_script_exists_and_reports_errors_without_traceback(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("domain: [unclosed\n")
    proc = subprocess.run(["mtl", "train", str(bad)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("mtl: error:") and "Traceback" not in proc.stderr


def test_diagnostics_are_logged_and_plotted(write_config, tmp_path, capsys):
    cfg = write_config({"baselines": {"stl": True}, "train.epochs": 2, "weighting": "dwa",
                        "gradients": {"diagnostics_every": 3}})
    ok(["train", str(cfg), "--no-progress"], capsys)
    (run_dir,) = run_dirs(tmp_path / "runs")
    rows = [json.loads(line) for line in (run_dir / "diagnostics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [3, 6, 9, 12]  # 6 steps per epoch, every 3rd
    assert set(rows[0]["cos"]) == {"left|right"} and 0.0 <= rows[0]["conflict"] <= 1.0
    assert rows[0]["weights"] == {"left": 1.0, "right": 1.0}
    assert (run_dir / "report_training.png").read_bytes()[:4] == b"\x89PNG"
