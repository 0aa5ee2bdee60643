"""Multi-domain generalisation in the sdg domain (``synthesis: sources``): the real source domains
are the loss terms, each step holds a sub-batch of every source, the held-out domain is evaluated."""
from __future__ import annotations

import pytest
import torch
import yaml

from mtl_platform import registry as registry_mod
from mtl_platform.batches import to_device
from mtl_platform.config import apply_overrides, resolve
from mtl_platform.experiment import build_experiment

from domainbed_tree import LAYOUT, _tree

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    root = _tree(tmp_path_factory.mktemp("domainbed"), "pacs")
    raw = {"domain": {"name": "sdg", "data": {"name": "pacs", "source": ["photo", "cartoon"], "targets": ["sketch"],
                                              "root": str(root), "image_size": 32},
                      "synthesis": "sources", "backbone": "resnet18", "width": 0.125, "batch_size": 4},
           "architecture": "hps", "weighting": "pcgrad", "optimizer": {"name": "sgd", "lr": 0.01},
           "train": {"epochs": 1, "device": "cpu", "progress": False}, "baselines": {"stl": False}}
    registry, _ = registry_mod.load()
    return build_experiment(resolve(raw, registry), registry)


def test_the_source_domains_are_the_loss_terms_and_every_step_holds_each(experiment):
    domain = experiment.domain
    assert domain.task_names == ["photo", "cartoon"] and domain.eval_tasks == ["sketch"]
    batches = list(domain.loaders("train", epoch=0))
    # 12 training images per source (15 minus DomainBed's 20 % holdout), batch 4: 3 steps
    assert len(batches) == 3
    domains = LAYOUT["pacs"][1]
    for batch in batches:
        assert len(batch) == 2
        for (images, labels, keys), name in zip(batch, ["photo", "cartoon"]):
            assert images.shape[0] == 4 and len(keys) == 4
            # the fixture's red channel encodes the domain: 40 · index / 255
            red = images[:, 0].mean((-1, -2))
            assert torch.allclose(red, torch.full_like(red, 40 * domains.index(name) / 255), atol=0.02)


def test_a_step_trains_and_the_held_out_domain_is_evaluated(experiment):
    domain, model = experiment.domain, experiment.model
    before = [p.detach().clone() for p in model.parameters()]
    batch = to_device(next(iter(domain.loaders("train", epoch=0))), experiment.device)
    out = domain.train_step(batch, model, experiment.engine, experiment.optimizers)
    assert set(out.losses) == {"photo", "cartoon"}
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    test = domain.evaluate(model, "test")
    assert set(test) == {"sketch", "mean"}
    assert set(domain.evaluate(model, "val")) == {"source"}
