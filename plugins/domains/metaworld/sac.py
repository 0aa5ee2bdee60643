"""Multi-task SAC (Haarnoja et al., "Soft Actor-Critic Algorithms and Applications", 2018; Yu et
al., Meta-World, CoRL 2019, §5: MT-SAC with a one-hot task id) as an update protocol whose
per-task actor and critic losses go through the gradient engine (DESIGN.md §3.6)."""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .networks import tanh_gaussian


class ActorCritic(nn.Module):
    """The networks of multi-task SAC, each one instance of the configured architecture:

    - ``actor``: π(a|s, t), task t's head giving [μ, log σ] of its Gaussian;
    - ``critics``: the twin Q-networks Q₁, Q₂ (two architectures, so the two estimates share no
      weights, as clipped double-Q assumes); ``targets``: their Polyak-averaged copies (not
      trained, in the checkpoint);
    - ``log_alpha``: one learnable entropy temperature per task;
    - ``critic_weighting``: a second instance of the configured weighting for the critic's
      loss family (the run's own instance weights the actor's), so that a weighting with state
      (FAMO's logits, UW's log-variances, Nash-MTL's last solution) keeps one state per family.

    It is one module so the experiment's one optimizer and one checkpoint hold everything. The
    engine's default gradient space is unused (``shared_parameters`` is empty): every engine call
    of the protocol names its family's shared parameters as ``params``.
    """

    def __init__(self, tasks: list[str], actor: nn.Module, critics: list[nn.Module], critic_weighting: nn.Module,
                 init_alpha: float):
        super().__init__()
        self.tasks = list(tasks)
        self.actor = actor
        self.critics = nn.ModuleList(critics)
        self.targets = nn.ModuleList(copy.deepcopy(c) for c in critics)
        for p in self.targets.parameters():
            p.requires_grad_(False)
        self.log_alpha = nn.Parameter(torch.full((len(tasks),), float(init_alpha)).log())
        self.critic_weighting = critic_weighting
        self.rep = None

    def forward(self, inputs):
        """The actor's outputs ``{task: [μ, raw log σ]}``."""
        return self.actor(inputs)

    # -- the parameter sets (each family's gradient space and its task parameters) ----------
    def shared_parameters(self) -> list[nn.Parameter]:
        return []

    def actor_shared(self) -> list[nn.Parameter]:
        return [p for p in self.actor.shared_parameters() if p.requires_grad]

    def critic_shared(self) -> list[nn.Parameter]:
        return [p for c in self.critics for p in c.shared_parameters() if p.requires_grad]

    def task_parameters(self, task: str) -> list[nn.Parameter]:
        return self.actor.task_parameters(task) + [p for c in self.critics for p in c.task_parameters(task)]

    def architecture_parameters(self) -> list[nn.Parameter]:
        return self.actor.architecture_parameters() + [p for c in self.critics for p in c.architecture_parameters()]

    def parameter_blocks(self) -> list[list[nn.Parameter]]:
        return []

    def parameter_counts(self) -> dict:
        def count(params) -> int:
            return sum(p.numel() for p in params)

        # the architecture contract's keys (what reports read), over actor and both critics; the
        # targets are the frozen parameters; then each network's own counts
        return {"total": count(self.parameters()),
                "shared": count(self.actor_shared()) + count(self.critic_shared()),
                "tasks": {t: count(self.task_parameters(t)) for t in self.tasks},
                "architecture": count(self.architecture_parameters()),
                "frozen": count(p for p in self.parameters() if not p.requires_grad),
                "actor": self.actor.parameter_counts(), "critic": self.critics[0].parameter_counts(),
                "critics": len(self.critics), "target": count(self.targets.parameters())}

    @torch.no_grad()
    def polyak(self, tau: float) -> None:
        """θ' ← θ' + τ (θ − θ') for every target parameter, computed exactly so (the test
        checks it to the float); buffers are copied as they are."""
        for critic, target in zip(self.critics, self.targets):
            for p, q in zip(critic.parameters(), target.parameters()):
                q.copy_(q + tau * (p - q))
            for b, c in zip(critic.buffers(), target.buffers()):
                c.copy_(b)


def per_task(batch: Tensor, onehot: Tensor, tasks: list[str]) -> dict[str, Tensor]:
    """(m, n, d) rows → ``{task: (n, d + m)}`` with each task's one-hot id appended."""
    n = batch.shape[1]
    return {t: torch.cat([batch[i], onehot[i].expand(n, -1)], dim=1) for i, t in enumerate(tasks)}


class MTSAC:
    """One gradient update of multi-task SAC on a balanced batch (n transitions per task):

    1. critic: y_t = r + γ (min_k Q'_k(s', a') − α_t log π(a'|s')), a' ~ π(·|s') (no gradient);
       L^Q_t = E_t[(Q₁(s, a) − y_t)² + (Q₂(s, a) − y_t)²] — the m losses through the engine over
       both Q-networks' shared parameters, with the critic family's weighting;
    2. actor: L^π_t = E_t[α_t log π(ã|s) − min_k Q_k(s, ã)], ã ~ π(·|s) reparameterised, the
       Q-networks frozen — the m losses through the engine over the actor's shared parameters,
       with the run's weighting (its ``after_step`` re-evaluates on the same batch and noise);
    3. temperature: L^α_t = −E_t[log α_t (log π(ã|s) + H̄)] with H̄ = −|A| by default; each α_t
       sees only its own task's loss, so it is a plain backward (no weighting);
    4. targets: Polyak averaging with τ.
    """

    def __init__(self, tasks: list[str], gamma: float, tau: float, target_entropy: float, log_std: tuple,
                 device: torch.device):
        self.tasks = list(tasks)
        self.gamma, self.tau, self.target_entropy = gamma, tau, target_entropy
        self.log_std = log_std
        self.onehot = torch.eye(len(tasks), device=device)

    def policy(self, model: ActorCritic, obs: dict[str, Tensor], noise: dict[str, Tensor] | None):
        out = model.actor(obs)
        acts, logps = {}, {}
        for t in self.tasks:
            acts[t], logps[t] = tanh_gaussian(out[t], None if noise is None else noise[t], *self.log_std)
        return acts, logps

    def q_values(self, critics, obs: dict[str, Tensor], acts: dict[str, Tensor]) -> list[dict[str, Tensor]]:
        inputs = {t: torch.cat([obs[t], acts[t]], dim=1) for t in self.tasks}
        return [{t: v.squeeze(-1) for t, v in critic(inputs).items()} for critic in critics]

    def critic_losses(self, model, obs, action, target) -> dict[str, Tensor]:
        acts = {t: action[i] for i, t in enumerate(self.tasks)}
        q1, q2 = self.q_values(model.critics, obs, acts)
        return {t: F.mse_loss(q1[t], target[i]) + F.mse_loss(q2[t], target[i]) for i, t in enumerate(self.tasks)}

    def actor_losses(self, model, obs, noise) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        acts, logps = self.policy(model, obs, noise)
        for p in model.critics.parameters():
            p.requires_grad_(False)
        try:
            q1, q2 = self.q_values(model.critics, obs, acts)
        finally:
            for p in model.critics.parameters():
                p.requires_grad_(True)
        alpha = model.log_alpha.detach().exp()
        losses = {t: (alpha[i] * logps[t] - torch.min(q1[t], q2[t])).mean() for i, t in enumerate(self.tasks)}
        return losses, logps

    @torch.no_grad()
    def targets(self, model, batch, next_obs) -> Tensor:
        noise = {t: torch.randn(batch["action"].shape[1:], device=self.onehot.device) for t in self.tasks}
        acts, logps = self.policy(model, next_obs, noise)
        q1, q2 = self.q_values(model.targets, next_obs, acts)
        alpha = model.log_alpha.exp()
        soft = torch.stack([torch.min(q1[t], q2[t]) - alpha[i] * logps[t] for i, t in enumerate(self.tasks)])
        return batch["reward"] + self.gamma * soft

    def update(self, model: ActorCritic, batch: dict[str, Tensor], engine, optimizers):
        """One update; returns (critic losses, actor losses, actor weights, critic weights), detached."""
        obs = per_task(batch["obs"], self.onehot, self.tasks)
        next_obs = per_task(batch["next_obs"], self.onehot, self.tasks)
        # 1. critic
        target = self.targets(model, batch, next_obs)
        closure = lambda: self.critic_losses(model, obs, batch["action"], target)  # noqa: E731
        critic = closure()
        critic_answer = engine.backward(critic, params=model.critic_shared(), weighting=model.critic_weighting)
        step(optimizers)
        model.critic_weighting.after_step(no_grad(closure))
        # 2. actor
        noise = {t: torch.randn(batch["action"].shape[1:], device=self.onehot.device) for t in self.tasks}
        actor, logps = self.actor_losses(model, obs, noise)
        actor_answer = engine.backward(actor, params=model.actor_shared())
        engine.step(optimizers, closure=lambda: self.actor_losses(model, obs, noise)[0])
        # 3. temperature (the policy's log-probabilities before this update's actor step)
        logp = torch.stack([logps[t].detach() for t in self.tasks])
        alpha_loss = -(model.log_alpha[:, None] * (logp + self.target_entropy)).mean(1).sum()
        alpha_loss.backward(inputs=[model.log_alpha])
        step(optimizers)
        # 4. targets
        model.polyak(self.tau)
        detach = lambda d: {k: v.detach() for k, v in d.items()}  # noqa: E731
        return detach(critic), detach(actor), actor_answer, critic_answer


def step(optimizers) -> None:
    """Step on the gradients present (Adam leaves parameters without a gradient alone), then clear."""
    for opt in optimizers:
        opt.step()
    for opt in optimizers:
        opt.zero_grad(set_to_none=True)


def no_grad(closure):
    def run():
        with torch.no_grad():
            return {k: v.detach() for k, v in closure().items()}
    return run
