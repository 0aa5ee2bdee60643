"""The paper's UDA settings (configs/uda/paper, spec gradients.md §1.8) resolve, build and train
one step on fixture data in each dataset's exact format, keeping their optimisation settings."""
from pathlib import Path

import pytest
import torch
import yaml

from mtl_platform import registry as registry_mod
from mtl_platform.config import apply_overrides, resolve
from mtl_platform.experiment import build_experiment

from test_uda_data import digits_root, trees  # noqa: F401  (fixtures: the tllib trees, the digit files)

ROOT = Path(__file__).resolve().parents[4]
CONFIGS = sorted((ROOT / "configs" / "uda" / "paper").glob("*.yaml"))


def test_every_dataset_and_method_of_the_paper_has_a_config():
    names = {p.stem for p in CONFIGS}
    for data in ("office31", "office_home", "visda", "domainnet"):
        assert {f"{data}_cdan", f"{data}_mcd"} <= names
    for data in ("office31", "office_home", "visda"):
        assert {f"{data}_gvb", f"{data}_ssrt"} <= names
    assert {"digits_cdan", "digits_mcd", "digits_dwl"} <= names
    for data in ("office_home", "domainnet"):  # PGA source-combined and MPGA (spec §3.4, §3.5)
        assert {f"{data}_multisource_pga", f"{data}_multisource_mpga"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_paper_config_trains_one_step_on_fixture_data(path, trees, digits_root, one_thread):  # noqa: F811
    raw = yaml.safe_load(path.read_text())
    family, method = raw["domain"]["data"]["name"], raw["domain"]["method"]["name"]
    root = digits_root if family == "digits" else trees[family]
    sets = [f"domain.data.root={root}", "domain.pretrained=null", "domain.iterations=1", "domain.batch_size=2",
            "domain.eval_batch_size=4", "train.epochs=1", "train.device=cpu", "baselines.stl=false"]
    if method != "pseudo_label":
        sets += ["domain.method.hidden=16"]
    if family != "digits":
        sets += ["domain.data.image_size=32", "domain.data.resize=36"]
    if method == "dwl":
        sets += ["domain.method.source_steps=1", "domain.method.generator_steps=1"]
    if raw["domain"]["backbone"] == "vit_b_16":  # ViT-B/16 in miniature: 32-px images, 4 patches, 2 blocks
        sets += ["domain.vit.width=32", "domain.vit.layers=2", "domain.vit.heads=2", "domain.vit.mlp=64",
                 "domain.bottleneck=16", "domain.method.sr_layers=[0,1]"]
    reg, _ = registry_mod.load()
    cfg = resolve(apply_overrides(raw, sets)[0], reg)
    # the paper's optimisation survives resolution
    assert cfg["optimizer"]["lr"] == raw["optimizer"]["lr"]
    inv = method in ("cdan", "gvb", "ssrt") and family != "digits"
    if inv:
        assert cfg["optimizer"]["lr_mult"] == {"head": 10} and cfg["optimizer"]["nesterov"]
        assert cfg["scheduler"]["name"] == "inv" and cfg["domain"]["batch_size"] == 2
    if method in ("gvb", "ssrt"):
        kept = {k: v for k, v in raw["domain"]["method"].items() if k not in ("hidden", "sr_layers")}
        assert {k: cfg["domain"]["method"][k] for k in kept} == kept  # the authors' settings survive resolution
    exp = build_experiment(cfg, reg)
    if inv:
        lrs = sorted({g["lr"] for opt in exp.optimizers for g in opt.param_groups})
        assert lrs == pytest.approx([raw["optimizer"]["lr"], 10 * raw["optimizer"]["lr"]])
    before = [p.detach().clone() for p in exp.model.encoder.parameters()]
    batch = next(iter(exp.domain.loaders("train", epoch=0)))
    if exp.closure is not None:  # PGA / MPGA: the closure method's update
        losses = exp.closure.step(exp.domain.closure(batch, exp.model), exp.engine, exp.optimizers).losses
    else:
        losses = exp.domain.train_step(batch, exp.model, exp.engine, exp.optimizers).losses
    expected = set(exp.domain.task_names) if method == "pseudo_label" else {"alignment", "classification"}
    assert set(losses) == expected and all(torch.isfinite(v) for v in losses.values())
    assert any(not torch.equal(a, b) for a, b in zip(before, exp.model.encoder.parameters()))
    accuracy = exp.domain.evaluate(exp.model, "test")["classification"]["accuracy"]
    assert 0.0 <= accuracy <= 1.0
