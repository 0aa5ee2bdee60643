"""A tiny synthetic-regression run config (three sinc tasks, task 2 unrelated) written for a
given architecture, that run-level tests of DSMTL-IL, DSMTL-AL and the fixed weighting share
(test_dsmtl_il.py, test_dsmtl_al.py, test_fixed.py)."""
import yaml

BASE = {
    "domain": {"name": "synthetic_regression", "activations": ["sinc", "sinc", "sinc"], "unrelated": [2],
               "train_samples": 96, "val_samples": 32, "test_samples": 32, "hidden": [8, 8], "batch_size": 16},
    "optimizer": {"name": "adam", "lr": 1.0e-2},
    "train": {"epochs": 2, "seed": 0, "device": "cpu", "progress": False, "log_every": 2},
}


def write(tmp_path, architecture, **sections):
    cfg = dict(BASE, architecture=architecture, output={"root": str(tmp_path / "runs")}, **sections)
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path
