"""The Meta-World multi-task RL domain (DESIGN.md §3.3, §3.6; issue 19)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from mtl_platform.contracts import Domain
from mtl_platform.contracts.step import StepOutput, task_weights
from mtl_platform.contracts.weighting import Needs
from mtl_platform.errors import UserError
from mtl_platform.params import Param

from . import envs as mw
from .evaluation import run_episodes
from .networks import linear_head, mlp_encoder, tanh_gaussian
from .replay import BalancedReplay
from .sac import MTSAC, ActorCritic, per_task
from .tasks import ControlTask

TRAIN, VAL, TEST, CUT = 0, 1, 2, 3  # the seed streams of episodes (envs.episode_seeds)


class Steps:
    """The training "batches" of one epoch: the indices of its environment steps from ``start``."""

    def __init__(self, start: int, stop: int):
        self.start, self.stop = start, stop

    def __len__(self) -> int:
        return self.stop - self.start

    def __iter__(self):
        return iter(range(self.start, self.stop))


class MetaWorld(Domain):
    """Meta-World (Yu et al., CoRL 2019) MT1, MT10 or MT50 through gymnasium, trained with
    multi-task SAC (``sac.MTSAC``) as this domain's update protocol.

    One environment per task, stepped together (``vector``: sync or async); the policy and the
    Q-networks read the observation with the task's one-hot id appended. An epoch is
    ``steps_per_epoch`` environment steps of every task (then evaluation: ``eval_episodes``
    deterministic episodes per task on ``test``, ``val_episodes`` on ``val``, each split its own
    seeded episodes). Each training step first acts (uniformly random actions for the first
    ``warmup_steps`` steps, then π's samples), stores one transition per task in a per-task
    replay buffer, then makes ``updates_per_step`` SAC updates on ``batch_size`` transitions
    *per task*. Actor and critics are each one instance of the configured architecture, built
    from this domain's factories (MLP stages of ``hidden`` units, linear heads), so any
    architecture that takes one batch per task works unchanged. The loss terms the weighting sees
    are the m per-task actor losses (the run's weighting) and, in a second engine call, the m
    per-task critic losses (a second instance of the same weighting). Success rate is the
    evaluated metric, so Δp and η are defined per task on it, against single-task SAC baselines
    (the same config with one task).
    """

    name = "metaworld"
    multi_input = True
    params = (
        Param("benchmark", str, "MT10", "the Meta-World benchmark", choices=mw.BENCHMARKS),
        Param("env_name", str, None, "MT1's environment, e.g. reach-v3", optional=True),
        Param("vector", str, "sync", "vectorised environments: sync (one process) or async (one process per task)",
              choices=("sync", "async")),
        Param("max_episode_steps", int, mw.MAX_PATH_LENGTH, "episode horizon (Meta-World's is 500)",
              bounds=f"[1, {mw.MAX_PATH_LENGTH}]"),
        Param("steps_per_epoch", int, 10000, "environment steps per task between evaluations", bounds="[1, inf)"),
        Param("eval_episodes", int, 10, "deterministic test episodes per task at each evaluation", bounds="[1, inf)"),
        Param("val_episodes", int, 10, "deterministic validation episodes per task (their own seeds)",
              bounds="[1, inf)"),
        Param("batch_size", int, 128, "transitions per task in each SAC update", bounds="[1, inf)"),
        Param("buffer_size", int, 100000, "replay capacity per task (transitions)", bounds="[1, inf)"),
        Param("warmup_steps", int, 1500, "environment steps with uniformly random actions before the first update",
              bounds="[1, inf)"),
        Param("updates_per_step", int, 1, "SAC updates per environment step", bounds="[1, inf)"),
        Param("gamma", float, 0.99, "discount", bounds="[0, 1]"),
        Param("tau", float, 0.005, "Polyak rate of the target Q-networks", bounds="[0, 1]"),
        Param("init_alpha", float, 1.0, "initial entropy temperature of every task", bounds="(0, inf)"),
        Param("target_entropy", float, None, "H̄ in the temperature loss (default: −|A|)", optional=True,
              bounds="(-inf, inf)"),
        Param("hidden", int, 400, "units of each encoder stage (actor and critics)", bounds="[1, inf)"),
        Param("layers", int, 3, "encoder stages, each one fully connected layer", bounds="[1, inf)"),
        Param("log_std_min", float, -20.0, "lower bound of the policy's log σ", bounds="(-inf, inf)"),
        Param("log_std_max", float, 2.0, "upper bound of the policy's log σ", bounds="(-inf, inf)"),
    )

    def __init__(self, seed: int = 0, **params):
        mw.require_metaworld()
        self.benchmark = params.get("benchmark", "MT10")
        self.env_name = params.get("env_name")
        super().__init__(seed, **params)
        c = self.config
        if c["log_std_min"] >= c["log_std_max"]:
            raise UserError(f"domain.log_std_min: got {c['log_std_min']}, expected below log_std_max "
                            f"({c['log_std_max']})")
        self.envs = None
        self.eval_envs = None
        self.replay: BalancedReplay | None = None
        self.sac: MTSAC | None = None
        self.steps = 0  # environment steps taken by every task
        self.ready = None  # the episode the training environments were last reset for
        self.obs = None
        self.pending_replay: Path | None = None
        self.critic_sum = None
        self.critic_count = 0
        self.epoch_ended = False  # an epoch ended whose critic means the critic weighting has not had
        self._said: set[str] = set()

    def build_tasks(self):
        return [ControlTask(name) for name in mw.benchmark_tasks(self.benchmark, self.env_name)]

    # -- environments --------------------------------------------------------------------------
    def prepare(self) -> None:
        """Make the training environments now, so a broken installation fails before a run directory exists."""
        self.training_envs()

    def training_envs(self):
        if self.envs is None:
            c = self.config
            self.envs = mw.make_vector(self.task_names, self.seed, c["max_episode_steps"], c["vector"])
            self.obs_dim = int(self.envs.single_observation_space.shape[0])
            self.act_dim = int(self.envs.single_action_space.shape[0])
        return self.envs

    def evaluation_envs(self):
        if self.eval_envs is None:
            c = self.config
            self.eval_envs = mw.make_vector(self.task_names, self.seed + 1, c["max_episode_steps"], c["vector"])
        return self.eval_envs

    def close(self) -> None:
        for e in (self.envs, self.eval_envs):
            if e is not None:
                e.close()
        self.envs = self.eval_envs = None

    def run_info(self) -> dict:
        return {"environment": {"benchmark": self.benchmark, **mw.versions(),
                                "env_steps_per_task": self.steps}}

    # -- networks ------------------------------------------------------------------------------
    def _inputs(self) -> int:
        self.training_envs()
        return self.obs_dim + len(self.tasks)

    def encoder_factory(self):
        """The actor's encoder: observation and one-hot task id in."""
        return mlp_encoder(self._inputs(), self.config["hidden"], self.config["layers"])

    def head_factory(self, task):
        """The actor's head: μ and raw log σ of each action dimension."""
        return linear_head(self.config["hidden"], 2 * self.act_dim)

    def critic_encoder_factory(self):
        return mlp_encoder(self._inputs() + self.act_dim, self.config["hidden"], self.config["layers"])

    def critic_head_factory(self, task):
        return linear_head(self.config["hidden"], 1)

    def compose(self, architecture, weighting):
        actor = architecture(self.encoder_factory, self.head_factory)
        if actor.architecture_parameters():
            raise UserError(f"architecture {actor.name!r}: its search steps split a dataset in two; the metaworld "
                            f"domain has no dataset (use hps, mmoe, cgc, ple, cross_stitch or mtan)")
        critics = [architecture(self.critic_encoder_factory, self.critic_head_factory) for _ in range(2)]
        return ActorCritic(self.task_names, actor, critics, weighting(), self.config["init_alpha"])

    # -- what the protocol refuses -------------------------------------------------------------
    def check_weighting(self, weighting) -> None:
        if weighting.needs is Needs.BLOCK_GRAMIANS:
            raise UserError(f"weighting {weighting.name!r}: it needs per-block Gramians, but MT-SAC passes each loss "
                            f"family's gradient space (actor, critic) to the engine as one block; use a weighting "
                            f"that works on the whole space (ew, pcgrad, cagrad, famo, nash_mtl, gh, ...)")

    def split_train(self, fraction, seed):
        raise UserError("domain metaworld: architecture search stages split a dataset; this domain has none")

    def load_split(self, split):
        raise UserError("domain metaworld: there are no data splits; environments are stepped by train_step")

    # -- training ------------------------------------------------------------------------------
    def loaders(self, split, epoch=0, start=0):
        if split != "train":
            return self.load_split(split)
        # the critic family's previous epoch ends at this epoch's first update (the model is known
        # there; a resumed run calls this before any step)
        self.epoch_ended = start == 0 and epoch > 0
        n = self.config["steps_per_epoch"]
        return Steps(start, n)

    def _critic_epoch_end(self) -> None:
        """The critic family's weighting gets its epoch's mean losses, as the trainer gives the actor's (DWA)."""
        weighting = self._model.critic_weighting
        weighting.epoch_end((self.critic_sum / self.critic_count).float())
        self.critic_sum.zero_()
        self.critic_count = 0

    def _setup(self, model: ActorCritic, device: torch.device) -> None:
        c = self.config
        self._model = model
        self.training_envs()
        if self.replay is None:
            self.replay = BalancedReplay(len(self.tasks), c["buffer_size"], self.obs_dim, self.act_dim, device)
            if self.pending_replay is not None:
                self.replay.load(self.pending_replay)
                self.pending_replay = None
        if self.sac is None:
            entropy = -float(self.act_dim) if c["target_entropy"] is None else c["target_entropy"]
            self.sac = MTSAC(self.task_names, c["gamma"], c["tau"], entropy, (c["log_std_min"], c["log_std_max"]),
                             device)
        if self.critic_sum is None:
            self.critic_sum = torch.zeros(len(self.tasks), dtype=torch.float64, device=device)

    def _reset_if_needed(self) -> None:
        horizon = self.config["max_episode_steps"]
        episode = self.steps // horizon
        if self.ready == episode:
            return
        stream = TRAIN
        if self.steps % horizon:  # resumed inside an episode: the environments cannot be restored
            stream = CUT
            self._say(f"metaworld: resumed inside training episode {episode} (step {self.steps % horizon} of "
                      f"{horizon}); it restarts from a fresh reset, so this run is not bit-for-bit the uninterrupted "
                      f"one (checkpoint at episode boundaries for that)")
        self.obs, _ = self.envs.reset(seed=mw.episode_seeds(self.seed, stream, episode, len(self.tasks)))
        self.ready = episode

    def _say(self, message: str) -> None:
        if message not in self._said:
            self._said.add(message)
            print(message)

    def act(self, model: ActorCritic, obs: torch.Tensor, deterministic: bool) -> torch.Tensor:
        """Actions (m, |A|) for each task's observation (m, d)."""
        with torch.no_grad():
            out = model.actor(per_task(obs[:, None], self.sac.onehot, self.task_names))
            noise = None if deterministic else torch.randn(len(self.tasks), 1, self.act_dim, device=obs.device)
            acts = [tanh_gaussian(out[t], None if noise is None else noise[i], *self.sac.log_std)[0]
                    for i, t in enumerate(self.task_names)]
        return torch.cat(acts)

    def train_step(self, batch, model, engine, optimizers):
        """Act once in every task's environment, store the transitions, then update (``sac.MTSAC``).
        The action's transfer to the environments is the only host synchronisation."""
        if engine.accumulate != 1:
            raise UserError(f"train.accumulate: got {engine.accumulate}; MT-SAC steps its critic, actor and "
                            f"temperature separately on each update and cannot accumulate gradients (use 1)")
        c = self.config
        device = next(model.parameters()).device
        self._setup(model, device)
        if self.epoch_ended:
            if self.critic_count:
                self._critic_epoch_end()
            self.epoch_ended = False
        self._reset_if_needed()
        obs = torch.as_tensor(self.obs, dtype=torch.float32).to(device)
        if self.steps < c["warmup_steps"]:
            action = torch.rand(len(self.tasks), self.act_dim, device=device) * 2 - 1
        else:
            action = self.act(model, obs, deterministic=False)
        next_obs, reward, _, _, _ = self.envs.step(action.cpu().numpy())
        self.replay.add(obs, action, torch.as_tensor(reward, dtype=torch.float32).to(device),
                        torch.as_tensor(next_obs, dtype=torch.float32).to(device))
        self.obs = next_obs
        self.steps += 1
        if self.steps < c["warmup_steps"]:
            zero = torch.zeros((), device=device)
            return StepOutput({t: zero for t in self.task_names}, None)
        for _ in range(c["updates_per_step"]):
            critic, actor, answer, _ = self.sac.update(model, self.replay.sample(c["batch_size"]), engine, optimizers)
        self.critic_sum += torch.stack([critic[t] for t in self.task_names]).double()
        self.critic_count += 1
        return StepOutput(actor, task_weights(answer, len(self.tasks)))

    # -- evaluation ----------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, model, split):
        device = next(model.parameters()).device
        self._setup(model, device)
        c = self.config
        was_training = model.training
        model.eval()

        def act(obs: np.ndarray) -> np.ndarray:
            return self.act(model, torch.as_tensor(obs, dtype=torch.float32).to(device), True).cpu().numpy()

        stream, episodes = (VAL, c["val_episodes"]) if split == "val" else (TEST, c["eval_episodes"])
        success, returns = run_episodes(act, self.evaluation_envs(), episodes, c["max_episode_steps"],
                                        self.seed, stream)
        model.train(was_training)
        return {t: {"success": float(success[i]), "return": float(returns[i])} for i, t in enumerate(self.task_names)}

    # -- resume --------------------------------------------------------------------------------
    def save_state(self, checkpoint: Path) -> dict:
        """Counters and the critic family's epoch sums in the checkpoint; the replay buffer in
        ``<checkpoint>.replay-<step>.npz`` next to it (atomic). The previous buffer file is kept
        until a newer one exists, so a crash between the two writes leaves a matching pair."""
        checkpoint = Path(checkpoint)
        name = ""
        if self.replay is not None:
            name = f"{checkpoint.name}.replay-{self.steps}.npz"
            self.replay.save(checkpoint.parent / name)
            for old in sorted(checkpoint.parent.glob(f"{checkpoint.name}.replay-*.npz")):
                if old.name != name and old.name != getattr(self, "_last_replay", None):
                    old.unlink(missing_ok=True)
            self._last_replay = name
        return {"steps": self.steps, "replay": name, "critic_count": self.critic_count,
                "critic_sum": self.critic_sum.cpu() if self.critic_sum is not None else torch.zeros(0)}

    def load_state(self, state: dict, checkpoint: Path) -> None:
        if not state:
            return
        self.steps = int(state["steps"])
        self.ready = None
        self.replay = None
        self.pending_replay = Path(checkpoint).parent / state["replay"] if state["replay"] else None
        if self.pending_replay is not None and not self.pending_replay.exists():
            raise UserError(f"{self.pending_replay}: the replay buffer of checkpoint {checkpoint} is missing; "
                            f"the run cannot resume with its buffer")
        self.critic_count = int(state["critic_count"])
        self.critic_sum = state["critic_sum"].double() if state["critic_sum"].numel() else None
