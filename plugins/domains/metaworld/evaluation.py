"""Success rate and return per task over deterministic evaluation episodes."""
from __future__ import annotations

from typing import Callable

import numpy as np

from .envs import episode_seeds


def run_episodes(act: Callable[[np.ndarray], np.ndarray], envs, episodes: int, horizon: int, seed: int,
                 stream: int) -> tuple[np.ndarray, np.ndarray]:
    """Run ``episodes`` episodes of ``horizon`` steps in every environment of ``envs`` at once
    (one task each), acting with ``act(obs (m, d)) -> actions (m, |A|)``; episode e of
    environment i starts from ``reset(seed=episode_seeds(seed, stream, e)[i])``.

    An episode is a success when Meta-World's ``info["success"]`` is raised at any step (the
    criterion of Meta-World's own evaluation, which stops the episode there); the episode runs
    its full horizon either way, and its return is the sum of all its rewards. Returns the
    success rate and the mean return per environment, each of shape (m,).
    """
    m = envs.num_envs
    successes = np.zeros(m)
    returns = np.zeros(m)
    for e in range(episodes):
        obs, _ = envs.reset(seed=episode_seeds(seed, stream, e, m))
        hit = np.zeros(m, dtype=bool)
        total = np.zeros(m)
        for _ in range(horizon):
            obs, reward, _, _, info = envs.step(act(obs))
            total += reward
            hit |= np.asarray(info["success"], dtype=float) > 0
        successes += hit
        returns += total
    return successes / episodes, returns / episodes
