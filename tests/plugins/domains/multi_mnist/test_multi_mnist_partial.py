"""MultiMNIST with labels removed (``domain.label_fraction``, issue 20): the requested fraction,
the same choice in every construction, another per seed, evaluation untouched, and a short
training run."""
from __future__ import annotations

import json

import pytest
import torch

from mtl_platform import session
from mtl_platform.errors import UserError
from mtl_platform.params import resolve_params
from mtl_platform_plugins.domains.multi_mnist.domain import MultiMNIST
from mtl_platform_plugins.domains.multi_mnist.partial import kept_labels

SIZES = {"train_pairs": 300, "val_pairs": 40, "test_pairs": 50}


def domain(seed=0, **params):
    """The domain as a config builds it (every declared parameter resolved)."""
    d = MultiMNIST(seed=seed, **resolve_params(MultiMNIST.declared_params(), {**SIZES, **params}, "domain"))
    d.prepare()
    return d


def test_the_requested_fraction_keeps_its_label():
    data = domain(label_fraction={"left": 0.1}).dataset("train")
    assert set(data.labelled) == {"left"}  # right keeps every label: no mask
    assert int(data.labelled["left"].sum()) == 30
    assert int(kept_labels(7, 0.5, 0, "left").sum()) == 4  # round(3.5): rounding, not truncation


def test_the_choice_is_the_same_in_every_construction_and_differs_per_seed_and_task():
    a = domain(label_fraction={"left": 0.5, "right": 0.5}).dataset("train").labelled
    b = domain(label_fraction={"left": 0.5, "right": 0.5}).dataset("train").labelled
    c = domain(seed=1, label_fraction={"left": 0.5}).dataset("train").labelled
    assert torch.equal(a["left"], b["left"])
    assert not torch.equal(a["left"], c["left"])
    assert not torch.equal(a["left"], a["right"])
    # a pure function of (seed, task, index): the key of sample i does not depend on the set's size
    assert torch.equal(kept_labels(300, 1.0, 0, "left"), torch.ones(300, dtype=torch.bool))


def test_evaluation_keeps_every_label():
    full, partial = domain(), domain(label_fraction={"left": 0.1})
    for split in ("val", "test"):
        assert len(partial.dataset(split)[0]) == 2  # (inputs, targets): no mask
        assert torch.equal(partial.dataset(split).targets["left"], full.dataset(split).targets["left"])
    assert torch.equal(partial.dataset("train").targets["left"], full.dataset("train").targets["left"])


def test_an_unknown_task_is_refused_in_one_line():
    with pytest.raises(UserError, match=r"domain.label_fraction: unknown task 'lef'.*did you mean 'left'"):
        MultiMNIST(seed=0, label_fraction={"lef": 0.5})


def test_the_single_task_baseline_keeps_only_its_own_fraction():
    section = {"name": "multi_mnist", "tasks": ["right"], "label_fraction": {"left": 0.1}}
    assert MultiMNIST.stl_domain_config(section)["label_fraction"] == {}


@pytest.mark.parametrize("weighting", ["ew", "mgda"])
def test_a_short_training_run_with_a_fraction_works(write_config, tmp_path, weighting, one_thread):
    """4 of 192 images keep ``left``: at least 2 of the 6 batches of an epoch have no ``left`` label."""
    cfg = write_config({"domain.label_fraction": {"left": 0.02}, "weighting": weighting, "train.epochs": 2})
    results = session.train(cfg, progress=False, echo=lambda *a, **k: None)
    (run_dir,) = [p for p in (tmp_path / "runs").iterdir() if p.is_dir()]
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    values = [v for row in rows for v in [*row["train"]["loss"].values(), *row["weights"].values()]]
    assert values and all(v == v and abs(v) < float("inf") for v in values)
    assert rows[-1]["train"]["loss"]["right"] < rows[0]["train"]["loss"]["right"]  # it learns
    assert 0.0 <= results["mtl"]["left"]["accuracy"] <= 1.0
