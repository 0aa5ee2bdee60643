"""AdaBN control for a UDA sweep with a BatchNorm generator (Li et al., "Revisiting Batch
Normalization for Practical Domain Adaptation", 2016).

A BN generator trained on the source alone keeps the source's normalisation statistics, and
the methods — which pass target batches through the generator — do not. Part of a method's
gain over source only can therefore be the statistics alone. This script takes every cached
source-only baseline a sweep used, re-estimates each BatchNorm layer's statistics on the
target's unlabelled training images (a cumulative average over them, the model otherwise
unchanged) and evaluates the target test split again. Usage:

    python bench/uda_adabn_control.py SWEEP_DIR

prints, per seed, source only's target accuracy before and after AdaBN, and their mean ± std.
"""
from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

import torch
from torch import nn

from mtl_platform import registry as registry_mod
from mtl_platform.config import read_yaml, resolve
from mtl_platform.experiment import build_experiment


def baseline_dirs(sweep: Path) -> list[Path]:
    """The distinct cached source-only runs the sweep's cells compared against."""
    found: dict[str, Path] = {}
    for cell in json.loads((sweep / "sweep.json").read_text())["cells"]:
        if cell["status"] != "done":
            continue
        entry = json.loads((Path(cell["run_dir"]) / "baselines.json").read_text())["classification"]
        found[entry["hash"]] = Path(entry["path"])
    return list(found.values())


@torch.no_grad()
def adabn(model: nn.Module, images: torch.Tensor, batch: int = 256) -> None:
    """Every BN layer's running statistics replaced by their average over ``images``."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        raise SystemExit("the generator has no BatchNorm layer: AdaBN changes nothing")
    model.eval()
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches below
        m.train()
    for start in range(0, len(images), batch):
        model.encoder(images[start:start + batch])
    model.eval()


def main(sweep: Path) -> None:
    registry, _ = registry_mod.load()
    before, after = [], []
    for entry in baseline_dirs(sweep):
        config = resolve(read_yaml(entry / "config.yaml"), registry)
        config["train"]["device"] = "cpu"
        exp = build_experiment(config, registry)
        exp.model.load_state_dict(torch.load(entry / "weights.pt", map_location="cpu", weights_only=True))
        domain = exp.domain
        acc0 = domain.evaluate(exp.model, "test")["classification"]["accuracy"]
        target = domain.target_train()
        images = torch.stack([target[i][0] for i in range(len(target))])
        adabn(exp.model, images)
        acc1 = domain.evaluate(exp.model, "test")["classification"]["accuracy"]
        before.append(acc0)
        after.append(acc1)
        print(f"seed {config['train']['seed']}: source only {acc0:.4f}, with AdaBN {acc1:.4f}")
    for name, values in (("source only", before), ("source only + AdaBN", after)):
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        print(f"{name}: {statistics.mean(values):.4f} ± {spread:.4f} over {len(values)} seeds")


if __name__ == "__main__":
    if len(sys.argv) != 2 or not (Path(sys.argv[1]) / "sweep.json").is_file():
        sys.exit("usage: python bench/uda_adabn_control.py SWEEP_DIR  (a folder with sweep.json)")
    main(Path(sys.argv[1]))
