"""The metaworld domain and its multi-task SAC protocol (issue 19)."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml

pytest.importorskip("metaworld")

from mtl_platform import registry as registry_mod  # noqa: E402
from mtl_platform import session  # noqa: E402
from mtl_platform.cli import main  # noqa: E402
from mtl_platform.config import resolve  # noqa: E402
from mtl_platform.contracts.weighting import Needs  # noqa: E402
from mtl_platform.errors import UserError  # noqa: E402
from mtl_platform.experiment import build_domain, build_experiment  # noqa: E402
from mtl_platform.trainer import Trainer  # noqa: E402
from mtl_platform_plugins.domains.metaworld import envs as mw  # noqa: E402
from mtl_platform_plugins.domains.metaworld.evaluation import run_episodes  # noqa: E402
from mtl_platform_plugins.domains.metaworld.replay import BalancedReplay  # noqa: E402
from mtl_platform_plugins.domains.metaworld.sac import per_task  # noqa: E402

THREE = ["reach-v3", "push-v3", "drawer-close-v3"]
TINY = {
    "domain": {"name": "metaworld", "benchmark": "MT10", "tasks": THREE, "max_episode_steps": 20,
               "steps_per_epoch": 40, "warmup_steps": 10, "batch_size": 8, "buffer_size": 200,
               "eval_episodes": 1, "val_episodes": 1, "hidden": 16, "layers": 2},
    "architecture": "hps", "weighting": "ew", "optimizer": {"name": "adam", "lr": 1.0e-3},
    "scheduler": {"name": "none"},
    "train": {"epochs": 1, "seed": 0, "device": "cpu", "progress": False, "log_every": 10},
    "baselines": {"stl": False},
}


def config(registry, **changes):
    raw = yaml.safe_load(yaml.safe_dump(TINY))
    for key, value in changes.items():
        section, _, name = key.partition(".")
        if name:
            raw[section][name] = value
        else:
            raw[section] = value
    return resolve(raw, registry)


@pytest.fixture(scope="module")
def registry():
    return registry_mod.load()[0]


@pytest.fixture(scope="module")
def domain(registry, one_thread):
    """Three MT10 tasks, built once (making environments is the slow part)."""
    return build_domain(config(registry), registry)


def fresh(domain):
    """The shared domain as a new run would find it (environments kept, no buffer, step 0)."""
    domain.replay = domain.sac = domain.critic_sum = None
    domain.steps, domain.ready, domain.critic_count = 0, None, 0
    domain.__dict__.pop("_model", None)  # what the previous run's setup left: a new run has none
    return domain


# -- evaluation harness ------------------------------------------------------------------------
def expert(name):
    from metaworld import policies

    stem = "".join(part.capitalize() for part in name[:-len("-v3")].split("-"))
    return getattr(policies, f"Sawyer{stem}V3Policy")()


def test_scripted_experts_succeed_and_random_actions_do_not(one_thread):
    tasks = ["reach-v3", "push-v3", "drawer-close-v3", "button-press-topdown-v3"]
    envs = mw.make_vector(tasks, seed=0, horizon=150)
    experts = [expert(t) for t in tasks]
    try:
        success, returns = run_episodes(lambda obs: np.stack([p.get_action(o) for p, o in zip(experts, obs)]),
                                        envs, episodes=3, horizon=150, seed=0, stream=2)
        assert success.tolist() == [1.0, 1.0, 1.0, 1.0]
        rng = np.random.default_rng(0)
        rand, rand_returns = run_episodes(lambda obs: rng.uniform(-1, 1, (len(tasks), 4)), envs, episodes=3,
                                          horizon=150, seed=0, stream=2)
        assert rand[1] == 0.0 and rand[3] == 0.0  # push and the top-down button: never by chance
        assert rand.mean() <= 0.25
        assert (returns > rand_returns).all()  # the experts also earn more reward on every task
    finally:
        envs.close()


def test_episode_seeds_are_a_pure_function_of_seed_stream_episode():
    assert mw.episode_seeds(0, 0, 3, 4) == mw.episode_seeds(0, 0, 3, 4)
    assert mw.episode_seeds(0, 0, 3, 4) != mw.episode_seeds(0, 1, 3, 4)
    assert mw.episode_seeds(0, 0, 3, 4) != mw.episode_seeds(0, 0, 4, 4)


# -- replay buffer -----------------------------------------------------------------------------
def test_replay_buffer_samples_the_same_number_per_task_from_that_task_only():
    buf = BalancedReplay(tasks=3, capacity=5, obs_dim=2, act_dim=1, device=torch.device("cpu"))
    for step in range(7):  # wraps around: each task holds its last 5 transitions
        obs = torch.tensor([[t, step] for t in range(3)], dtype=torch.float32)
        buf.add(obs, torch.zeros(3, 1), torch.full((3,), float(step)), obs)
    assert len(buf) == 5
    torch.manual_seed(0)
    batch = buf.sample(400)
    assert batch["obs"].shape == (3, 400, 2) and batch["reward"].shape == (3, 400)
    for t in range(3):
        assert (batch["obs"][t, :, 0] == t).all()  # every row of task t is task t's
        steps = set(batch["obs"][t, :, 1].long().tolist())
        assert steps == {2, 3, 4, 5, 6}  # uniform over the filled part: the 2 oldest were overwritten


def test_replay_buffer_round_trips_through_npz(tmp_path):
    buf = BalancedReplay(2, 4, 3, 2, torch.device("cpu"))
    for _ in range(3):
        buf.add(torch.randn(2, 3), torch.randn(2, 2), torch.randn(2), torch.randn(2, 3))
    buf.save(tmp_path / "r.npz")
    other = BalancedReplay(2, 4, 3, 2, torch.device("cpu"))
    other.load(tmp_path / "r.npz")
    assert other.added == 3 and all(torch.equal(buf.data[k], other.data[k]) for k in buf.data)


# -- the protocol ------------------------------------------------------------------------------
def test_per_task_losses_reach_only_their_own_heads(registry, domain):
    exp = build_experiment(config(registry), registry, domain=fresh(domain))
    model, d = exp.model, exp.domain
    for step in range(12):  # past the warm-up: buffer filled, protocol set up
        d.train_step(step, model, exp.engine, exp.optimizers)
    torch.manual_seed(1)
    batch = d.replay.sample(4)
    obs = per_task(batch["obs"], d.sac.onehot, d.task_names)
    actor, _ = d.sac.actor_losses(model, obs, {t: torch.randn(4, d.act_dim) for t in d.task_names})
    critic = d.sac.critic_losses(model, obs, batch["action"], torch.randn(3, 4))
    for family, losses, net in (("actor", actor, [model.actor]), ("critic", critic, list(model.critics))):
        shared = [p for n in net for p in n.shared_parameters()]
        for t in d.task_names:
            for s in d.task_names:
                own = [p for n in net for p in n.task_parameters(s)]
                grads = torch.autograd.grad(losses[t], own + shared, allow_unused=True, retain_graph=True)
                head = [g for g in grads[:len(own)] if g is not None]
                norm = sum(float(g.abs().sum()) for g in head)
                assert (norm > 0) == (s == t), (family, t, s)
                assert sum(float(g.abs().sum()) for g in grads[len(own):] if g is not None) > 0


def test_target_networks_follow_polyak_to_the_float(registry, domain):
    exp = build_experiment(config(registry), registry, domain=fresh(domain))
    model = exp.model
    with torch.no_grad():
        for p in model.critics.parameters():
            p.add_(torch.randn_like(p))
    before = [q.clone() for q in model.targets.parameters()]
    model.polyak(0.005)
    for p, q0, q in zip(model.critics.parameters(), before, model.targets.parameters()):
        assert torch.equal(q, q0 + 0.005 * (p - q0))


def weightings(registry):
    return sorted(c.name for c in registry.components("weighting"))


def test_every_weighting_runs_updates_on_mt10_tasks_or_is_refused_in_one_line(registry, domain):
    refused, ran = [], []
    for name in weightings(registry):
        cfg = config(registry, weighting={"name": name})
        wcls = registry.get("weighting", name).cls
        try:
            exp = build_experiment(cfg, registry, domain=fresh(domain))
        except UserError as exc:
            assert "\n" not in str(exc)
            refused.append(name)
            continue
        torch.manual_seed(0)
        before = [p.detach().clone() for p in exp.model.actor.shared_parameters()]
        for step in range(12):  # warm-up 10, then two updates
            out = exp.domain.train_step(step, exp.model, exp.engine, exp.optimizers)
        assert all(torch.isfinite(v).all() for v in out.losses.values()), name
        moved = any(not torch.equal(a, b) for a, b in zip(before, exp.model.actor.shared_parameters()))
        assert moved, name
        ran.append(name)
        assert wcls.needs is not Needs.BLOCK_GRAMIANS
    assert {"ew", "pcgrad", "cagrad", "famo", "nash_mtl", "gh", "uw", "mgda"} <= set(ran)
    assert "conal_conflict" in refused


def test_mt1_runs_the_trainer_and_records_versions(registry, tmp_path, one_thread):
    cfg = yaml.safe_load(open("configs/rl/mt1_smoke.yaml"))
    cfg["domain"].update(steps_per_epoch=30, warmup_steps=20, max_episode_steps=15, eval_episodes=1)
    cfg["train"].update(epochs=1, progress=False)
    cfg = resolve(cfg, registry)
    results = Trainer(build_experiment(cfg, registry), tmp_path, registry_mod.load()[1]).fit()
    assert set(results["test"]["reach-v3"]) == {"success", "return"}
    assert results["environment"]["metaworld"].startswith("3.")
    assert results["environment"]["env_steps_per_task"] == 30


def test_the_report_renders_a_run(tmp_path, one_thread):
    """A sweep's report reads the actor-critic's parameter counts like any architecture's (it
    failed with KeyError 'shared' at the end of the MT10 sweep)."""
    cfg = yaml.safe_load(open("configs/rl/mt1_smoke.yaml"))
    cfg["domain"].update(steps_per_epoch=30, warmup_steps=20, max_episode_steps=15, eval_episodes=1, val_episodes=1)
    cfg["train"].update(epochs=1, progress=False)
    cfg["baselines"] = {"stl": False}
    cfg["output"] = {"root": str(tmp_path / "runs")}
    (tmp_path / "mt1.yaml").write_text(yaml.safe_dump(cfg))
    results = session.train(tmp_path / "mt1.yaml", echo=lambda *a, **k: None)
    counts = results["parameters"]
    assert counts["shared"] > 0 and set(counts["tasks"]) == {"reach-v3"} and counts["frozen"] == counts["target"]
    main(["report", str(results["run_dir"]), "--out", str(tmp_path / "report")])  # a refusal would exit 2
    assert f"shared {counts['shared']:,}" in (tmp_path / "report" / "report.md").read_text()


# -- resume ------------------------------------------------------------------------------------
@pytest.mark.parametrize("weighting", ["ew", "dwa"])  # DWA: the critic's epoch means cross the cut
def test_a_resumed_run_continues_at_the_saved_step_with_the_same_buffer(registry, domain, tmp_path, weighting):
    pm = registry_mod.load()[1]
    full = tmp_path / "full"
    cut = tmp_path / "cut"
    for d in (full, cut):
        d.mkdir()
    Trainer(build_experiment(config(registry, weighting=weighting, **{"train.epochs": 2}), registry, domain=fresh(domain)),
            full, pm).fit()
    straight = {k: v.clone() for k, v in domain.replay.data.items()}
    final = build_experiment(config(registry, weighting=weighting), registry, domain=fresh(domain))
    Trainer(final, cut, pm).fit()  # one epoch, then "killed"
    saved = {k: v.clone() for k, v in domain.replay.data.items()}
    resumed = build_experiment(config(registry, weighting=weighting, **{"train.epochs": 2}), registry, domain=fresh(domain))
    trainer = Trainer(resumed, cut, pm)
    trainer.restore()
    assert domain.steps == 40 and trainer.run.step == 40
    domain._setup(resumed.model, torch.device("cpu"))
    assert all(torch.equal(domain.replay.data[k], saved[k]) for k in saved)
    Trainer(build_experiment(config(registry, weighting=weighting, **{"train.epochs": 2}), registry, domain=fresh(domain)),
            cut, pm).fit(resume=True)
    assert all(torch.equal(domain.replay.data[k], straight[k]) for k in straight)  # the same transitions
    a = torch.load(full / "model.pt", weights_only=True)
    b = torch.load(cut / "model.pt", weights_only=True)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # bit for bit
    assert sorted(p.name for p in cut.glob("checkpoint.pt.replay-*.npz")) == [
        "checkpoint.pt.replay-40.npz", "checkpoint.pt.replay-80.npz"]


# -- bad input ---------------------------------------------------------------------------------
def fails(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err
    return err


@pytest.mark.parametrize("change, words", [
    ({"benchmark": "MT11"}, ["domain.benchmark", "MT10"]),
    ({"tasks": ["reach-v4"]}, ["domain.tasks", "reach-v3"]),
    ({"benchmark": "MT1", "tasks": None, "env_name": "rech-v3"}, ["domain.env_name", "reach-v3"]),
    ({"benchmark": "MT1", "tasks": None}, ["domain.env_name"]),
])
def test_bad_benchmark_or_task_is_one_line_exit_2(tmp_path, capsys, change, words):
    cfg = yaml.safe_load(yaml.safe_dump(TINY))
    cfg["domain"].update(change)
    cfg["domain"] = {k: v for k, v in cfg["domain"].items() if v is not None}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    err = fails(["train", str(path), "--set", f"output.root={tmp_path / 'runs'}"], capsys)
    assert all(w in err for w in words), err
    assert not (tmp_path / "runs").exists()


def test_block_weighting_is_refused_in_one_line(tmp_path, capsys):
    cfg = dict(TINY, weighting="conal_conflict")
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    err = fails(["train", str(path), "--set", f"output.root={tmp_path / 'runs'}"], capsys)
    assert "conal_conflict" in err and "per-block" in err


def test_missing_metaworld_is_one_line_exit_2(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "metaworld", None)  # import metaworld now raises ImportError
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(TINY))
    err = fails(["train", str(path), "--set", f"output.root={tmp_path / 'runs'}"], capsys)
    assert "Meta-World is not installed" in err and "pip install" in err


def test_list_shows_the_domain_without_importing_mujoco():
    code = ("import sys\nfrom mtl_platform.cli import main\n"
            "try:\n    main(['list'])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in ('mujoco', 'metaworld', 'gymnasium') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "metaworld" in out and out.strip().splitlines()[-1] == "[]"


@pytest.mark.parametrize("arch", ["hps", "mmoe", "cgc", "cross_stitch", "mtan"])
def test_architectures_build_actor_and_critics_from_the_domain_factories(registry, domain, arch):
    exp = build_experiment(config(registry, architecture={"name": arch}), registry, domain=fresh(domain))
    assert type(exp.model.actor).name == arch and all(type(c).name == arch for c in exp.model.critics)
    before = [p.detach().clone() for p in exp.model.critic_shared()]
    for step in range(11):
        out = exp.domain.train_step(step, exp.model, exp.engine, exp.optimizers)
    assert all(torch.isfinite(v) for v in out.losses.values())
    assert any(not torch.equal(a, b) for a, b in zip(before, exp.model.critic_shared()))


def test_search_architectures_are_refused_in_one_line(registry, domain):
    with pytest.raises(UserError, match="conal"):
        build_experiment(config(registry, architecture={"name": "conal"}), registry, domain=fresh(domain))


@pytest.mark.parametrize("name", ["mt1_smoke", "mt10_cpu", "mt10_paper", "mt50_paper"])
def test_rl_configs_resolve(registry, name):
    resolve(yaml.safe_load(open(f"configs/rl/{name}.yaml")), registry)
