"""The thesis's CityScapes and NYUv2 configs (and their CPU variants) validate and run one
training step end to end on fixture folders written in the real on-disk format."""
import json
import shutil
from pathlib import Path

import pytest

from mtl_platform import session

from test_dense_npy_loaders import write_cityscapes, write_nyuv2

ROOT = Path(__file__).resolve().parents[4]
CONFIGS = sorted((ROOT / "configs" / "thesis").rglob("*.yaml"))
quiet = {"progress": False, "echo": lambda *a, **k: None}


def test_every_architecture_of_the_issue_has_a_config_per_dataset():
    names = {(p.parent.name, p.stem) for p in CONFIGS}
    for folder in ("thesis", "quick"):
        for data in ("cityscapes", "nyuv2"):
            for arch in ("hps", "cross_stitch", "mtan", "conal", "dsmtl_il", "dsmtl_jl", "dsmtl_al"):
                assert (folder, f"{data}_{arch}") in names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_thesis_config_runs_one_step_on_fixture_data(path, tmp_path, one_thread):
    data = path.stem.split("_", 1)[0]
    root = tmp_path / data
    # 5 training files, 1 carved off for validation: 4 samples, one batch of 4
    (write_nyuv2 if data == "nyuv2" else write_cityscapes)(root, n_train=5, n_test=2, h=32, w=32)
    sets = [f"domain.data.root={root}", "domain.data.val_fraction=0.2", "domain.pretrained=null",
            "domain.batch_size=4", "domain.eval_batch_size=4", "train.epochs=1", "train.device=cpu",
            "baselines.stl=false", f"output.root={tmp_path / 'runs'}"]
    text = path.read_text()
    if "search:" in text:
        sets += ["architecture.search.epochs=1", "architecture.search.batch_size=2"]
    results = session.train(path, sets=sets, **quiet)
    run_dir = Path(results["run_dir"])
    final = (run_dir / "stages" / list(results["stages"])[-1]) if "stages" in results else run_dir
    rows = [json.loads(line) for line in (final / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1]  # one epoch of exactly one optimiser step in the final stage
    expected = {"nyuv2": {"segmentation", "depth", "normal"}, "cityscapes": {"segmentation", "depth"}}[data]
    assert set(results["test"]) == expected
    # a ResNet-50 run's checkpoints take up to 4 GB: free them now, not when pytest prunes its
    # temporary folders (all 28 runs together filled about 30 GB)
    shutil.rmtree(tmp_path)
