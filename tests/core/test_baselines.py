"""STL baselines: derived config, trained once, cached by hash, reused with zero retraining."""
import copy
import json

import pytest

from mtl_platform import registry, session
from mtl_platform.baselines import cache_root, stl_config, stl_parts
from mtl_platform.config import config_hash, resolve
from mtl_platform.errors import UserError

from conftest import run_dirs

quiet = {"progress": False, "echo": lambda *a, **k: None}


def test_stl_config_keeps_everything_but_the_task_set():
    reg, _ = registry.load(builtin_only=True)
    cfg = resolve({"domain": {"name": "multi_mnist", "batch_size": 16}, "weighting": "dwa",
                   "optimizer": {"name": "sgd", "lr": 0.1}, "train": {"epochs": 3, "seed": 4}}, reg, name="x")
    stl = stl_config(cfg, "right", reg)
    assert stl["domain"]["tasks"] == ["right"] and stl["domain"]["batch_size"] == 16
    assert stl["architecture"] == {"name": "hps"} and stl["weighting"] == {"name": "ew"}
    assert stl["optimizer"] == cfg["optimizer"] and stl["train"] == cfg["train"]
    assert cfg["domain"]["tasks"] is None  # the original is untouched
    assert config_hash(stl_config(cfg, "left", reg)) != config_hash(stl)


def frozen_stl_config(config: dict, task: str) -> dict:
    """``stl_config`` as it was before the single-task model became data (commit cceab20),
    kept verbatim so that the cache keys of existing STL entries are checked against it."""
    out = copy.deepcopy(config)
    out["domain"]["tasks"] = [task]
    out["architecture"] = {"name": "hps"}
    out["weighting"] = {"name": "ew"}
    out["gradients"] = dict(out["gradients"], mode="param")
    out["baselines"] = {"stl": False}
    out["output"] = dict(out["output"], name=f"stl_{task}")
    return out


@pytest.mark.parametrize("raw", [
    {"domain": {"name": "multi_mnist", "batch_size": 16}, "weighting": "dwa", "baselines": {"stl": True}},
    {"domain": {"name": "synthetic_regression", "activations": ["sinc", "sinc"]}, "architecture": "dsmtl_al",
     "optimizer": {"name": "sgd", "lr": 0.1}},
    {"domain": {"name": "multi_mnist"}, "architecture": "mmoe", "baselines": {"stl_architecture": "hps",
                                                                             "stl_weighting": {"name": "ew"}}},
])
def test_the_default_stl_model_keeps_the_cache_keys_of_existing_entries(raw):
    """Zero retraining after the change: the STL config (and so its cache key) of a default
    choice, or of the same choice written out, equals the one the old code derived."""
    reg, _ = registry.load(builtin_only=True)
    cfg = resolve(raw, reg, name="x")
    for task in ("left", "right") if raw["domain"]["name"] == "multi_mnist" else ("task0", "task1"):
        new, old = stl_config(cfg, task, reg), frozen_stl_config(cfg, task)
        assert new == old
        assert config_hash(new, registry=reg) == config_hash(old, registry=reg)


def test_the_new_keys_leave_the_run_hash_alone_until_they_are_set():
    """Sweeps find their finished runs and reports group old and new runs together: a config
    that leaves baselines.stl_* null hashes as one resolved before the keys existed."""
    reg, _ = registry.load(builtin_only=True)
    cfg = resolve({"domain": "multi_mnist", "baselines": {"stl": True}}, reg)
    assert cfg["baselines"] == {"stl": True, "stl_architecture": None, "stl_weighting": None}
    before = copy.deepcopy(cfg)
    before["baselines"] = {"stl": True}
    assert config_hash(cfg) == config_hash(before)
    chosen = resolve({"domain": "multi_mnist", "baselines": {"stl": True, "stl_architecture": "mmoe"}}, reg)
    assert config_hash(chosen) != config_hash(cfg)


def test_the_stl_model_is_a_config_choice_validated_like_any_section():
    reg, _ = registry.load(builtin_only=True)
    cfg = resolve({"domain": "multi_mnist", "weighting": "dwa",
                   "baselines": {"stl": True, "stl_architecture": {"name": "mmoe", "num_experts": 2},
                                 "stl_weighting": "uw"}}, reg)
    assert cfg["baselines"]["stl_architecture"]["num_experts"] == 2
    stl = stl_config(cfg, "left", reg)
    assert stl["architecture"] == cfg["baselines"]["stl_architecture"] and stl["weighting"] == {"name": "uw", "init": 0.0}
    assert config_hash(stl, registry=reg) != config_hash(frozen_stl_config(cfg, "left"), registry=reg)
    with pytest.raises(UserError, match=r"^baselines\.stl_architecture\.name: unknown architecture 'hsp' "
                                        r"\(did you mean 'hps'\?\)"):
        resolve({"domain": "multi_mnist", "baselines": {"stl_architecture": "hsp"}}, reg)
    with pytest.raises(UserError, match=r"^baselines\.stl_architecture\.num_experts: got 0"):
        resolve({"domain": "multi_mnist", "baselines": {"stl_architecture": {"name": "mmoe", "num_experts": 0}}}, reg)


def test_without_a_declared_stl_model_the_key_is_required_before_anything_is_built():
    """The default is what a plugin declares: with the declaring plugin disabled, baselines.stl
    needs the STL model named, and says so while the config is resolved."""
    import types

    from mtl_platform.hookspecs import hookimpl
    from mtl_platform_plugins.architectures.hps import HPS

    class Plain(HPS):
        """Someone else's architecture, the only one installed."""

        name = "plain"

    plugin = types.ModuleType("plain_plugin")
    plugin.mtl_register = hookimpl(lambda registry: registry.add_architecture(Plain))
    reg, _ = registry.load(builtin_only=True, disable=["mtl_platform.architectures"], extra_plugins=[plugin])
    assert reg.default("baselines.stl_architecture") is None
    raw = {"domain": "multi_mnist", "architecture": "plain", "weighting": "ew"}
    assert resolve(raw, reg)["baselines"]["stl_architecture"] is None  # not needed without baselines
    with pytest.raises(UserError, match=r"^baselines\.stl_architecture: required, no plugin declares a default "
                                        r"\(name one of: plain\)$"):
        resolve(dict(raw, baselines={"stl": True}), reg)
    # the weighting defaults come from the weightings' plugin, still installed
    assert resolve(dict(raw, weighting=None), reg)["weighting"]["name"] == "ew"
    chosen = resolve(dict(raw, baselines={"stl": True, "stl_architecture": "plain", "stl_weighting": "ew"}), reg)
    assert stl_config(chosen, "left", reg)["architecture"] == {"name": "plain"}


def test_baselines_are_trained_once_then_reused(write_config, tmp_path, recorder, isolated_cache):
    cfg = write_config({"baselines": {"stl": True}, "train.epochs": 2})
    first = session.train(cfg, extra_plugins=[recorder], **quiet)
    assert recorder.starts == ["stl:left", "stl:right", "main"]
    assert sorted(p.name for p in (cache_root() / "stl").iterdir() if p.is_dir()) == sorted(
        first["stl_hashes"].values())
    entry = cache_root() / "stl" / first["stl_hashes"]["left"]
    assert (entry / "weights.pt").exists() and not (entry / "checkpoint.pt").exists()
    cached = json.loads((entry / "results.json").read_text())
    assert first["stl"]["left"] == cached["test"]["left"]

    recorder.starts.clear()
    second = session.train(cfg, extra_plugins=[recorder], **quiet)
    assert recorder.starts == ["main"]  # zero STL retraining
    assert second["stl"] == first["stl"] and second["stl_hashes"] == first["stl_hashes"]
    newest = run_dirs(tmp_path / "runs")[-1]
    recorded = json.loads((newest / "baselines.json").read_text())
    assert recorded["right"]["hash"] == first["stl_hashes"]["right"]
    assert recorded["right"]["test"] == first["stl"]["right"]
    for name in ("report.md", "report.json", "report_delta.png"):
        assert (newest / name).exists()

    recorder.starts.clear()
    session.train(cfg, sets=["weighting.name=dwa"], extra_plugins=[recorder], **quiet)
    assert recorder.starts == ["main"]  # the weighting does not define the STL baseline
    session.train(cfg, sets=["optimizer.lr=0.01"], extra_plugins=[recorder], **quiet)
    assert recorder.starts == ["main", "stl:left", "stl:right", "main"]  # the learning rate does


def test_the_stl_run_of_a_task_is_the_one_task_model(write_config):
    """An STL baseline equals an MTL run restricted to that task with HPS and EW."""
    cfg = write_config({"baselines": {"stl": True}, "train.epochs": 1})
    results = session.train(cfg, **quiet)
    alone = session.train(write_config({"domain.tasks": ["left"], "train.epochs": 1}, name="alone"), **quiet)
    assert results["stl"]["left"] == alone["mtl"]["left"]


def test_report_values_are_computed_from_the_run(write_config):
    results = session.train(write_config({"baselines": {"stl": True}, "train.epochs": 1}), **quiet)
    from mtl_platform.metrics import delta_p

    expected = delta_p(results["mtl"], results["stl"], results["spec"])
    by_hand = 100 * sum(results["mtl"][t]["accuracy"] / results["stl"][t]["accuracy"] - 1
                        for t in ("left", "right")) / 2
    assert abs(expected - by_hand) < 1e-9


def test_a_replaced_builtin_does_not_reuse_the_builtins_baselines(write_config, recorder):
    """The cache key names the plugin each component came from."""
    import types

    from mtl_platform.hookspecs import hookimpl
    from mtl_platform_plugins.weightings.ew import EW

    class ThirdPartyEW(EW):
        """Someone else's 'ew'."""

    plugin = types.ModuleType("other_ew")
    plugin.mtl_register = hookimpl(lambda registry: registry.add_weighting(ThirdPartyEW))
    cfg = write_config({"baselines": {"stl": True}, "train.epochs": 1})
    first = session.train(cfg, **quiet)
    second = session.train(cfg, disable=["weighting:ew@mtl_platform.weightings"], extra_plugins=[plugin, recorder],
                           **quiet)
    assert recorder.starts == ["stl:left", "stl:right", "main"]
    assert set(first["stl_hashes"].values()).isdisjoint(second["stl_hashes"].values())


def test_stl_parts_split_a_cached_model_by_its_architectures_split_task_state(tmp_path, monkeypatch):
    """HPS knows its own state-dict layout; the core only calls ``split_task_state``."""
    import torch

    from mtl_platform.contracts import Architecture
    from mtl_platform.errors import UserError
    from mtl_platform_plugins.architectures.hps import HPS
    from mtl_platform_plugins.domains.synthetic_regression.domain import SyntheticRegression

    from conftest import make_domain

    reg, _ = registry.load(builtin_only=True)
    cfg = resolve({"domain": {"name": "synthetic_regression"}}, reg)
    d = make_domain(SyntheticRegression, activations=["sinc", "sinc"], train_samples=16, hidden=[8, 8])
    stl = HPS(["task1"], d.encoder_factory, d.head_factory)
    torch.save(stl.state_dict(), tmp_path / "weights.pt")
    encoder, head = stl_parts(cfg, "task1", reg, tmp_path / "weights.pt")
    fresh_encoder, fresh_head = d.encoder_factory(), d.head_factory("task1")
    fresh_encoder.load_state_dict(encoder)  # strict: exactly the encoder's keys
    fresh_head.load_state_dict(head)
    for copy, trained in ((fresh_encoder, stl.encoder), (fresh_head, stl.heads["task1"])):
        assert all(torch.equal(a, b) for a, b in zip(copy.state_dict().values(), trained.state_dict().values()))

    monkeypatch.setattr(HPS, "split_task_state", classmethod(Architecture.split_task_state.__func__))
    with pytest.raises(UserError, match="STL models' architecture 'hps' cannot be reused here: .*split_task_state"):
        stl_parts(cfg, "task1", reg, tmp_path / "weights.pt")
