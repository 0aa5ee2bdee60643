"""``pseudo_label``: PGA's objective on any backbone (spec gradients.md §3.1): thresholded
pseudo-labels by hand, no NaN with nothing kept, each head's gradient from its own loss only,
one labelling per batch, the offline hook, prediction, and a run of the digits config."""
import math
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

from mtl_platform import registry as registry_mod
from mtl_platform import session
from mtl_platform.config import apply_overrides, resolve
from mtl_platform.errors import UserError
from mtl_platform.experiment import build_experiment
from mtl_platform_plugins.domains.uda.methods.pseudo_label import PseudoLabel, TargetHead, confident_cross_entropy

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = Path(__file__).resolve().parents[4]
CONFIG = ROOT / "configs" / "uda" / "pga_digits.yaml"
TINY = ["domain.data.train_per_domain=64", "domain.iterations=2", "domain.batch_size=8",
        "train.epochs=1", "train.device=cpu", "baselines.stl=false"]
quiet = {"progress": False, "echo": lambda *a, **k: None}


def experiment(sets=()):
    reg, _ = registry_mod.load()
    raw, _ = apply_overrides(yaml.safe_load(CONFIG.read_text()), [*TINY, *sets])
    return build_experiment(resolve(raw, reg), reg)


class Tiny(nn.Module):
    """An identity generator on 2-d inputs and identity linear heads: logits = inputs."""

    def __init__(self, heads=("target", "source")):
        super().__init__()
        self.encoder = nn.Identity()
        self.heads = nn.ModuleDict({h: nn.Linear(2, 2) for h in heads})
        with torch.no_grad():
            for head in self.heads.values():
                head.weight.copy_(torch.eye(2))
                head.bias.zero_()


def test_confident_cross_entropy_keeps_only_samples_above_the_threshold_by_hand():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    labels = torch.tensor([0, 0, 1])
    confidence = torch.tensor([0.9, 0.4, 0.41])  # 0.4 is not above τ = 0.4: dropped
    loss = confident_cross_entropy(logits, labels, confidence, 0.4)
    by_hand = (math.log(1 + math.exp(-2.0)) + math.log(2.0)) / 2  # samples 0 and 2
    assert loss.item() == pytest.approx(by_hand, abs=1e-6)


def test_nothing_kept_gives_zero_loss_and_zero_gradient_without_nan():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]], requires_grad=True)
    loss = confident_cross_entropy(logits, torch.tensor([-1, -1]), torch.tensor([0.1, 0.2]), 0.4)
    loss.backward()
    assert loss.item() == 0.0 and torch.equal(logits.grad, torch.zeros(2, 2))


def test_online_pseudo_labels_come_from_the_source_head_and_the_target_loss_by_hand():
    method = PseudoLabel(threshold=0.6, pseudo_labels="online", predict="target")
    model = Tiny()
    xs, ys = torch.tensor([[1.0, 0.0]]), torch.tensor([1])
    xt = torch.tensor([[2.0, 0.0], [0.0, 0.0], [0.0, 3.0]])  # source confidences 0.881, 0.5 (dropped), 0.953
    out = method.losses(model, xs, ys, xt, torch.tensor(0.0), ["target", "source"])
    target = (math.log(1 + math.exp(-2.0)) + math.log(1 + math.exp(-3.0))) / 2
    assert out["target"].item() == pytest.approx(target, abs=1e-6)
    assert out["source"].item() == pytest.approx(math.log(1 + math.e), abs=1e-6)  # CE([1, 0], 1)


def test_the_same_batch_keeps_its_pseudo_labels_a_new_batch_is_labelled_again():
    """A closure method re-evaluates the same batch at perturbed parameters: L_T must stay the
    same function, so the labels of that batch are reused; the next batch is labelled afresh."""
    method = PseudoLabel(threshold=0.0)
    model = Tiny()
    xs, ys = torch.tensor([[1.0, 0.0]]), torch.tensor([0])
    xt = torch.tensor([[2.0, 0.0]])
    first = method.losses(model, xs, ys, xt, torch.tensor(0.0), ["target", "source"])["target"]
    with torch.no_grad():
        model.heads["source"].weight.copy_(-torch.eye(2))  # the source head now says class 1
    again = method.losses(model, xs, ys, xt, torch.tensor(0.0), ["target", "source"])["target"]
    fresh = method.losses(model, xs, ys, xt.clone(), torch.tensor(0.0), ["target", "source"])["target"]
    assert again.item() == first.item() == pytest.approx(math.log(1 + math.exp(-2.0)), abs=1e-6)
    assert fresh.item() == pytest.approx(math.log(1 + math.exp(2.0)), abs=1e-6)


def test_each_head_gets_gradient_from_its_own_loss_only():
    exp = experiment(["domain.method.threshold=0"])  # every target sample kept, so L_T reaches its head
    model, domain = exp.model, exp.domain
    assert domain.task_names == ["target", "source"]
    batch = next(iter(domain.loaders("train", epoch=0)))
    losses = domain.losses(batch, model)
    heads = {t: list(model.heads[t].parameters()) for t in ("target", "source")}
    for loss_name, other in (("source", "target"), ("target", "source")):
        grads = torch.autograd.grad(losses[loss_name], heads[other], retain_graph=True, allow_unused=True)
        assert all(g is None or torch.count_nonzero(g) == 0 for g in grads), loss_name
        own = torch.autograd.grad(losses[loss_name], heads[loss_name], retain_graph=True, allow_unused=True)
        assert any(g is not None and torch.count_nonzero(g) > 0 for g in own), loss_name


calls = []


def rule(self, model, xt):
    """Offline labels from a fixed rule (the hook a zero-shot model plugs into): class 1 with
    confidence 0.9 when the image's mean is positive, else class 0 with confidence 0.7."""
    calls.append(len(xt))
    positive = (xt.flatten(1).mean(1) > 0)[:, None]
    return torch.where(positive, torch.tensor([0.1, 0.9]), torch.tensor([0.7, 0.3]))


def test_offline_pseudo_labels_are_computed_once_before_training_and_read_by_index(monkeypatch):
    monkeypatch.setattr(PseudoLabel, "pseudo_labeller", rule)
    exp = experiment(["domain.method.pseudo_labels=offline", "domain.method.threshold=0.5"])
    domain, model, method = exp.domain, exp.model, exp.domain.method
    head = model.heads["target"]
    target = domain.target_train()
    assert isinstance(head, TargetHead) and len(head.offline_labels) == len(target)
    assert not bool(head.offline_ready)
    batch = next(iter(domain.loaders("train", epoch=0)))
    assert len(batch) == 5  # the target indices come with the batch
    calls.clear()
    domain.train_step(batch, model, exp.engine, exp.optimizers)
    positive = torch.stack([target[i][0].mean() > 0 for i in range(len(target))])
    assert bool(head.offline_ready) and sum(calls) == len(target)
    assert torch.equal(head.offline_labels, positive.long())
    assert torch.allclose(head.offline_confidence, torch.where(positive, 0.9, 0.7))
    domain.train_step(batch, model, exp.engine, exp.optimizers)
    assert sum(calls) == len(target)  # not labelled again
    PseudoLabel(**method.config).before_step(model, target)  # a resumed run: the labels came with the model
    assert sum(calls) == len(target)
    labels, confidence = method.target_labels(model, None, batch[2], batch[4], ["source"])
    assert torch.equal(labels, positive.long()[batch[4]])
    assert "offline_labels" in {k.split(".")[-1] for k in model.state_dict()}  # checkpointed with the model


def test_offline_without_a_labeller_is_refused_in_one_line_before_any_run(tmp_path, capsys):
    from mtl_platform.cli import main

    sets = [*TINY, "domain.method.pseudo_labels=offline", f"output.root={tmp_path / 'runs'}"]
    with pytest.raises(SystemExit) as exit_:
        main(["train", str(CONFIG), *(a for s in sets for a in ("--set", s))])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "offline needs a pseudo-labeller" in err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


@pytest.mark.parametrize("sets, message", [
    (["domain.method.threshold=1.5"], "domain.method.threshold: got 1.5"),
    (["domain.method.predict=both"], "domain.method.predict: got 'both'"),
    (["domain.tasks=[target]"], "domain.tasks: pseudo_label trains all of its loss terms"),
])
def test_bad_pseudo_label_options_one_line_exit_2(tmp_path, capsys, sets, message):
    from mtl_platform.cli import main

    argv = [*TINY, *sets, f"output.root={tmp_path / 'runs'}"]
    with pytest.raises(SystemExit) as exit_:
        main(["train", str(CONFIG), *(a for s in argv for a in ("--set", s))])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert message in err, err


def test_prediction_target_head_or_ensemble_by_hand():
    model = Tiny()
    with torch.no_grad():
        model.heads["source"].weight.copy_(torch.tensor([[0.0, 0.0], [0.0, 0.0]]))  # uniform
    x = torch.tensor([[math.log(3.0), 0.0]])  # target softmax (0.75, 0.25)
    assert torch.allclose(PseudoLabel(predict="target").predict(model, x), x)
    ensemble = PseudoLabel(predict="ensemble").predict(model, x).exp()
    assert torch.allclose(ensemble, torch.tensor([[0.625, 0.375]]))


def test_the_domain_evaluates_through_the_methods_prediction(monkeypatch):
    exp = experiment()
    labels = torch.stack([y["classification"] for _, y in exp.domain.dataset("test")])
    monkeypatch.setattr(PseudoLabel, "predict", lambda self, model, x: torch.eye(10)[[3] * len(x)])
    accuracy = exp.domain.evaluate(exp.model, "test")["classification"]["accuracy"]
    assert accuracy == pytest.approx((labels == 3).float().mean().item())


def test_the_digits_config_trains_and_reports_target_accuracy(tmp_path):
    results = session.train(CONFIG, sets=[*TINY, f"output.root={tmp_path}"], **quiet)
    assert set(results["test"]) == {"classification"}
    assert 0.0 <= results["test"]["classification"]["accuracy"] <= 1.0
    assert results["label"] == "pseudo_label · hps + ew + pga"  # PGA is the closure of the config
    config = yaml.safe_load((Path(results["run_dir"]) / "config.yaml").read_text())
    assert config["domain"]["method"]["name"] == "pseudo_label"


def test_check_encoder_accepts_a_generator_that_labels():
    class Labeller(nn.Identity):
        def pseudo_labeller(self, xt):
            return torch.full((len(xt), 2), 0.5)

    method = PseudoLabel(pseudo_labels="offline")
    method.check_encoder(Labeller())
    with pytest.raises(UserError, match="offline needs a pseudo-labeller"):
        method.check_encoder(nn.Identity())
    model = Tiny()
    model.encoder = Labeller()
    assert torch.equal(method.pseudo_labeller(model, torch.zeros(3, 2)), torch.full((3, 2), 0.5))


def test_pga_takes_the_pseudo_label_objective_and_mcd_refuses_a_closure(tmp_path, capsys):
    """The closure seam in UDA: PGA's perturbed passes over [target, source] with their own heads;
    a method with its own multi-step protocol (MCD) is refused before a run directory exists."""
    from pathlib import Path

    import yaml

    from mtl_platform import registry as registry_mod
    from mtl_platform.batches import to_device
    from mtl_platform.cli import main
    from mtl_platform.config import apply_overrides, resolve
    from mtl_platform.experiment import build_experiment

    config = Path(__file__).resolve().parents[4] / "configs" / "uda" / "pga_digits.yaml"
    tiny = ["domain.data.train_per_domain=64", "domain.iterations=2", "domain.batch_size=8", "train.epochs=1",
            "train.device=cpu", "baselines.stl=false"]
    reg, _ = registry_mod.load()
    raw, _ = apply_overrides(yaml.safe_load(config.read_text()), tiny)
    exp = build_experiment(resolve(raw, reg), reg)
    assert exp.closure is not None and exp.closure.name == "pga"
    assert exp.domain.task_names == ["target", "source"]
    batch = to_device(next(iter(exp.domain.loaders("train", epoch=0))), exp.device)
    heads = {t: [p.detach().clone() for p in exp.model.task_parameters(t)] for t in exp.domain.task_names}
    out = exp.closure.step(exp.domain.closure(batch, exp.model), exp.engine, exp.optimizers)
    assert set(out.losses) == {"target", "source"}
    assert any(not torch.equal(a, b) for a, b in zip(heads["source"], exp.model.task_parameters("source")))
    runs = tmp_path / "runs"
    args = ["train", str(config), "--no-progress"]
    for s in [*tiny, f"output.root={runs}", "domain.method={name: mcd}"]:
        args += ["--set", s]
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and len(err.strip().splitlines()) == 1 and "mcd" in err, err
    assert not runs.exists() or not any(runs.iterdir())
