"""The fixed weighting: without its weights, a run is refused in one line."""
import pytest

from mtl_platform import cli

from synthetic_runs import write


def test_a_fixed_weighting_without_weights_is_a_one_line_error(tmp_path, capsys):
    cfg = write(tmp_path, "hps", weighting={"name": "fixed"})
    with pytest.raises(SystemExit) as exc:
        cli.main(["train", str(cfg)])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mtl: error: weighting.weights: required") and "\n" not in err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
