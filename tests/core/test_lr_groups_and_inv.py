"""Per-group learning-rate multipliers (optimizer.lr_mult over a domain's parameter groups)
and the per-iteration inv schedule lr·(1 + γ i)^(−p) of CDAN and DANN."""
import json
from pathlib import Path

import pytest
import torch

from mtl_platform import session
from mtl_platform.errors import UserError
from mtl_platform.optim import build_optimizer

ROOT = Path(__file__).resolve().parents[2]
UDA = ROOT / "configs" / "uda" / "mnist_to_uci.yaml"
TINY = ["domain.data.train_per_domain=64", "domain.iterations=3", "domain.batch_size=8", "domain.method.hidden=32",
        "train.epochs=2", "train.device=cpu", "baselines.stl=false"]
quiet = {"progress": False, "echo": lambda *a, **k: None}


def test_named_groups_get_their_multiplier_and_the_rest_the_base_lr():
    a, b, c = (torch.nn.Parameter(torch.zeros(2)) for _ in range(3))
    cfg = {"name": "sgd", "lr": 0.01, "weight_decay": 0.0, "momentum": 0.9, "nesterov": False,
           "lr_mult": {"head": 10}}
    opt = build_optimizer(cfg, [a, b, c], groups={"head": [b]})
    lrs = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
    assert lrs == {id(a): 0.01, id(b): pytest.approx(0.1), id(c): 0.01}
    assert len(build_optimizer(cfg, [a, b, c], groups=None).param_groups) == 1  # no groups known: one group


def test_uda_head_at_ten_times_and_inv_decay_per_iteration(tmp_path, one_thread):
    sets = [*TINY, "optimizer.lr_mult={head: 10}", "scheduler.name=inv", "scheduler.inv_gamma=0.1",
            "scheduler.inv_power=0.75", f"output.root={tmp_path}"]
    results = session.train(UDA, sets=sets, **quiet)
    rows = [json.loads(x) for x in (Path(results["run_dir"]) / "metrics.jsonl").read_text().splitlines()]
    # after epoch 1 (3 iterations) and 2 (6): base lr 0.01 · (1 + 0.1 i)^(−0.75)
    assert [r["lr"] for r in rows] == pytest.approx([0.01 * (1 + 0.1 * i) ** -0.75 for i in (3, 6)])
    ckpt = torch.load(Path(results["run_dir"]) / "checkpoint.pt", weights_only=True)
    groups = ckpt["optimizers"][0]["param_groups"]
    assert sorted(round(g["initial_lr"], 6) for g in groups) == [0.01, 0.1]


def test_an_unknown_group_is_a_one_line_error(tmp_path):
    with pytest.raises(UserError, match=r"^optimizer\.lr_mult\.backbone: not a parameter group of domain 'uda'"):
        session.train(UDA, sets=[*TINY, "optimizer.lr_mult={backbone: 0.1}", f"output.root={tmp_path}"], **quiet)
