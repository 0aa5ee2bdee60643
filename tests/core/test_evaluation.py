"""``mtl eval RUN_DIR`` (issue 23, item 3): a trained run and its STL baselines re-evaluated from the
run folder reproduce the recorded test metrics exactly; ``--export`` writes the documented files;
a folder that is not a run is one line and exit 2."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mtl_platform import runs, session
from mtl_platform.cli import main
from mtl_platform.evaluation import evaluate_run

from conftest import assert_one_line_error, run_dirs

quiet = {"progress": False, "echo": lambda *a, **k: None}


def figures(compared: dict) -> dict:
    return {t: {m: f["evaluated"] for m, f in ms.items()} for t, ms in compared.items()}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One run per epoch selection, with STL baselines: 2 epochs of tiny MultiMNIST (one thread,
    as mtl eval then runs)."""
    import yaml
    from conftest import TINY

    tmp = tmp_path_factory.mktemp("eval")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    out = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MTL_CACHE", str(tmp / "cache"))
        for select in ("val", "last"):
            cfg = dict(TINY, output={"root": str(tmp / select)}, baselines={"stl": True})
            cfg["train"] = dict(cfg["train"], select=select, epochs=3)
            (tmp / f"{select}.yaml").write_text(yaml.safe_dump(cfg))
            out[select] = session.train(tmp / f"{select}.yaml", **quiet)
        yield out, tmp
    torch.set_num_threads(before)


@pytest.mark.parametrize("select", ["val", "last"])
def test_eval_reproduces_the_recorded_test_metrics_exactly(trained, select):
    results = trained[0][select]
    run_dir = results["run_dir"]
    out = evaluate_run(run_dir)
    assert figures(out["mtl"]) == results["test"]  # ==, not approx
    assert all(f["same"] for ms in out["mtl"].values() for f in ms.values())
    assert out["weights"].endswith("best.pt" if select == "val" else "model.pt")
    baselines = json.loads((Path(run_dir) / runs.BASELINES_FILE).read_text())
    assert set(out["stl"]) == {"left", "right"}
    for task, entry in out["stl"].items():
        assert {m: f["evaluated"] for m, f in entry["metrics"].items()} == baselines[task]["test"]
        assert results["stl"][task] == baselines[task]["test"]


def test_last_checkpoint_reproduces_the_last_metrics_row(trained):
    results = trained[0]["val"]
    rows = runs.read_jsonl(Path(results["run_dir"]) / runs.METRICS_FILE)
    out = evaluate_run(results["run_dir"], split="val", checkpoint="last")
    assert out["weights"].endswith("model.pt")
    assert figures(out["mtl"]) == rows[-1]["val"]


def test_export_writes_the_documented_npz_files(trained, tmp_path):
    results = trained[0]["last"]
    code = None
    try:
        main(["eval", results["run_dir"], "--export", str(tmp_path / "export")])
    except SystemExit as exc:
        code = exc.code
    assert code in (None, 0)
    saved = json.loads((tmp_path / "export" / "eval.json").read_text())
    assert figures(saved["mtl"]) == results["test"]
    for task in ("left", "right"):
        with np.load(tmp_path / "export" / f"{task}.npz") as npz:
            assert sorted(npz.files) == ["index", "prediction", "target"]
            assert npz["prediction"].shape == (64, 10) and npz["target"].shape == (64,)
            assert (npz["index"] == np.arange(64)).all()
            accuracy = float((npz["prediction"].argmax(1) == npz["target"]).mean())
        assert accuracy == pytest.approx(results["test"][task]["accuracy"], abs=1e-12)


def test_eval_of_a_folder_that_is_not_a_run_is_one_line_and_exit_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", str(tmp_path)])
    out, err = capsys.readouterr()
    assert_one_line_error(exit_info.value.code, out, err, rf"mtl eval {tmp_path}: not a run directory \(no config.yaml\)")


def test_eval_best_of_an_unfinished_run_says_to_use_last(write_config, tmp_path, capsys):
    from conftest import InterruptAt

    with pytest.raises(KeyboardInterrupt):
        session.train(write_config({"train.checkpoint_every": 2}), extra_plugins=[InterruptAt(4)], **quiet)
    (run_dir,) = run_dirs(tmp_path / "runs")
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", str(run_dir)])
    out, err = capsys.readouterr()
    assert_one_line_error(exit_info.value.code, out, err, r"has not finished .*--checkpoint last")
    out = evaluate_run(run_dir, checkpoint="last")  # the checkpoint's model, mid-epoch: nothing recorded to compare
    assert out["weights"].endswith("checkpoint.pt")
    assert all(f["recorded"] is None for ms in out["mtl"].values() for f in ms.values())


def test_export_of_a_dense_labelling_task_writes_png_masks(tmp_path, one_thread):
    """Segmentation's argmax per pixel as PNG masks (pixel value = class index)."""
    import yaml
    from PIL import Image

    cfg = {"domain": {"name": "dense", "data": {"name": "scenes", "image_size": [32, 32], "train_images": 8,
                                                "val_images": 4, "test_images": 3},
                      "backbone": "segnet", "width": 4, "batch_size": 4, "eval_batch_size": 2},
           "architecture": "hps", "weighting": "ew",
           "train": {"epochs": 1, "seed": 0, "device": "cpu", "progress": False},
           "output": {"root": str(tmp_path / "runs")}}
    (tmp_path / "dense.yaml").write_text(yaml.safe_dump(cfg))
    results = session.train(tmp_path / "dense.yaml", **quiet)
    out = evaluate_run(results["run_dir"], export=tmp_path / "export")
    assert figures(out["mtl"]) == results["test"]
    seg = [t for t, files in out["export"].items() if len(files) == 2]
    assert seg, out["export"]
    for task in seg:
        with np.load(tmp_path / "export" / f"{task}.npz") as npz:
            classes = npz["prediction"].argmax(1)
        masks = sorted((tmp_path / "export" / task).glob("*.png"))
        assert [m.name for m in masks] == ["0.png", "1.png", "2.png"]
        for mask, expected in zip(masks, classes):
            assert (np.asarray(Image.open(mask)) == expected).all()
