"""Meta-World environments through gymnasium, imported lazily (DESIGN.md §4).

Every environment is ``gymnasium.make("Meta-World/MT1", env_name=...)`` — the environment
class of one task with its 50 goal (object and target position) variations — wrapped so that
``reset(seed=s)`` picks the goal from ``s`` as well, and vectorised with gymnasium's
``SyncVectorEnv`` or ``AsyncVectorEnv`` (one environment per task, in the domain's task
order). The benchmark (MT1, MT10, MT50) only says which tasks exist; building each task's
environment the same way lets a subset of MT10 (the STL baseline of one task) run exactly the
environment it has in the multi-task run. Autoreset is disabled: the domain resets every
environment itself at each episode boundary with a seed that is a pure function of
(run seed, episode index, environment), which is what makes episodes reproducible and a
resumed run continue bit for bit (docs/rl.md, "Resume").
"""
from __future__ import annotations

import numpy as np

from mtl_platform.errors import UserError

SUPPORTED = ">=3,<4"  # the Meta-World versions this domain is written and tested against
BENCHMARKS = ("MT1", "MT10", "MT50")
MAX_PATH_LENGTH = 500  # Meta-World 3's episode horizon; its environments refuse more steps


def require_metaworld():
    """``metaworld``, or one line saying how to install it (and which versions work)."""
    try:
        import metaworld  # noqa: F401
        import gymnasium  # noqa: F401
    except ImportError as exc:
        raise UserError(f"domain metaworld: Meta-World is not installed ({exc}); install it with "
                        f"pip install 'metaworld{SUPPORTED}' gymnasium mujoco") from None
    from importlib.metadata import version
    from packaging.specifiers import SpecifierSet

    found = version("metaworld")
    if found not in SpecifierSet(SUPPORTED):
        raise UserError(f"domain metaworld: Meta-World {found} is installed; this domain needs metaworld{SUPPORTED}")
    return metaworld


def versions() -> dict[str, str]:
    """The installed versions results depend on (Meta-World+ showed results moving across versions)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("metaworld", "gymnasium", "mujoco"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


def benchmark_tasks(benchmark: str, env_name: str | None) -> list[str]:
    """The task (environment) names of ``benchmark`` in Meta-World's order."""
    require_metaworld()
    from metaworld import env_dict

    if benchmark == "MT1":
        names = list(env_dict.ALL_V3_ENVIRONMENTS)
        if env_name is None:
            raise UserError("domain.env_name: MT1 needs the environment to train, e.g. reach-v3")
        if env_name not in names:
            from mtl_platform.params import did_you_mean

            raise UserError(f"domain.env_name: unknown Meta-World environment {env_name!r}"
                            f"{did_you_mean(env_name, names)}; MT50 has {len(names)}, e.g. {', '.join(names[:5])}, ...")
        return [env_name]
    if env_name is not None:
        raise UserError(f"domain.env_name: only MT1 takes an environment name; {benchmark} has a fixed list "
                        f"(choose a subset with domain.tasks)")
    table = {"MT10": env_dict.MT10_V3, "MT50": env_dict.MT50_V3}[benchmark]
    return list(table)


class _SeededGoal:
    """Builds one task's environment whose ``reset(seed=s)`` also chooses the goal variation from
    ``s`` (Meta-World's own wrapper would draw it from the environment's previous RNG state)."""

    def __init__(self, name: str, seed: int, horizon: int):
        self.name, self.seed, self.horizon = name, seed, horizon

    def __call__(self):
        import gymnasium

        env = gymnasium.make("Meta-World/MT1", env_name=self.name, seed=self.seed,
                             max_episode_steps=self.horizon, disable_env_checker=True)
        return _seeded_goal_class()(env)


_CLASS = None


def _seeded_goal_class():
    """The wrapper class, defined on first use (gymnasium is imported lazily)."""
    global _CLASS
    if _CLASS is None:
        import gymnasium

        class SeededGoal(gymnasium.Wrapper):
            def __init__(self, env):
                super().__init__(env)
                env.get_wrapper_attr("toggle_sample_tasks_on_reset")(False)
                self.goals = env.get_wrapper_attr("tasks")

            def reset(self, *, seed=None, options=None):
                if seed is not None:
                    goal = int(np.random.default_rng(seed).integers(len(self.goals)))
                    self.env.unwrapped.set_task(self.goals[goal])
                return self.env.reset(seed=seed, options=options)

        _CLASS = SeededGoal
    return _CLASS


def make_vector(tasks: list[str], seed: int, horizon: int, mode: str = "sync"):
    """One environment per task, vectorised (``mode``: sync or async), autoreset disabled."""
    require_metaworld()
    import gymnasium

    fns = [_SeededGoal(name, seed, horizon) for name in tasks]
    disabled = gymnasium.vector.AutoresetMode.DISABLED
    if mode == "async":
        return gymnasium.vector.AsyncVectorEnv(fns, autoreset_mode=disabled, context="spawn")
    return gymnasium.vector.SyncVectorEnv(fns, autoreset_mode=disabled)


def episode_seeds(seed: int, stream: int, episode: int, count: int) -> list[int]:
    """The reset seed of each environment for one episode: a pure function of the run's seed, the
    stream (0: training, 1: validation, 2: test evaluation), the episode index and the environment."""
    root = np.random.SeedSequence([int(seed), int(stream), int(episode)])
    return [int(s) for s in root.generate_state(count, dtype=np.uint32)]
