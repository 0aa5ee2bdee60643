"""One gradient path (issue 16, point 3): the engine calls the weighting's ``after_step`` itself,
with the update protocol's closure, once per optimizer step; a protocol returns what the
trainer logs (``StepOutput``), so the trainer reads no engine state."""
import ast
from pathlib import Path

import pytest
import torch

from mtl_platform.contracts import StepOutput, Weighting
from mtl_platform.gradients import GradientEngine

from test_engine import TASKS, Net, losses

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(autouse=True)
def float64():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


class AfterStep(Weighting):
    """Equal weights; records what ``after_step`` saw."""

    name = "after_step_probe"

    def __init__(self, tasks):
        super().__init__(tasks)
        self.seen = []

    def weights(self, losses, **computed):
        return torch.ones_like(losses)

    def after_step(self, closure):
        self.seen.append(closure())


def test_after_step_gets_the_closure_once_per_optimizer_step_at_the_updated_parameters():
    model = Net()
    weighting = AfterStep(TASKS)
    engine = GradientEngine(model, weighting, TASKS, accumulate=2, echo=lambda m: None)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for call in range(4):
        engine.backward(losses(model))
        engine.step([opt], closure=lambda: losses(model))
        assert len(weighting.seen) == (call + 1) // 2  # after every second call: the optimizer steps
    after = weighting.seen[-1]
    assert all(not v.requires_grad for v in after.values())  # evaluated without gradients
    with torch.no_grad():
        expected = losses(model)  # the parameters as the last step left them
    assert all(torch.equal(after[t], expected[t]) for t in TASKS)


def test_a_protocol_without_a_closure_is_told_once_that_after_step_is_skipped():
    said = []
    model = Net()
    weighting = AfterStep(TASKS)
    engine = GradientEngine(model, weighting, TASKS, echo=said.append)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(3):
        engine.backward(losses(model))
        engine.step([opt])
    assert weighting.seen == []
    notes = [s for s in said if "after each optimizer step" in s]
    assert len(notes) == 1 and "\n" not in notes[0]


def test_the_default_protocol_returns_losses_and_task_weights():
    from conftest import make_domain
    from mtl_platform_plugins.domains.synthetic_regression.domain import SyntheticRegression
    from mtl_platform import registry

    reg, _ = registry.load(builtin_only=True)
    domain = make_domain(SyntheticRegression, activations=["sinc"] * 3, train_samples=32)
    domain.prepare()
    model = reg.get("architecture", "hps").cls(domain.task_names, domain.encoder_factory, domain.head_factory)
    weighting = reg.get("weighting", "dwa").cls(domain.task_names)
    gh = reg.get("weighting", "gh").cls(domain.task_names)
    batch = domain.dataset("train").get_batch(torch.arange(8))
    for w in (weighting, gh):
        engine = GradientEngine(model, w, domain.task_names, echo=lambda m: None)
        out = domain.train_step(batch, model, engine, [torch.optim.SGD(model.parameters(), lr=0.01)])
        assert isinstance(out, StepOutput) and set(out.losses) == set(domain.task_names)
        assert all(not v.requires_grad for v in out.losses.values())
        assert out.weights is not None and torch.equal(out.weights, engine.last_weights)


def test_the_trainer_reads_no_engine_state_but_its_counters():
    """The trainer logs what the protocol returns; the engine's per-step attributes and the
    weighting's after_step are the engine's business (a check on the source)."""
    tree = ast.parse((ROOT / "mtl_platform" / "trainer.py").read_text())
    read = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Attribute) and node.value.attr == "engine"}
    assert not read & {"last_weights", "stepped", "steps", "micro_steps", "scaler"}, read
    calls = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
    assert "after_step" not in calls
