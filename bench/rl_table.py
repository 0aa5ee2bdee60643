"""The MT10 study table of a finished `mtl sweep` on the metaworld domain (docs/rl.md).

    python bench/rl_table.py SWEEP_DIR [--no-random]

One row per weighting: the final test success rate of each task and their mean, mean ± std over
the seeds, and Welch's p-value of the mean success against EW; then the same for the mean
undiscounted test return (which moves long before success does) (`mtl_platform.metrics.p_value_welch`).
A control row, "random policy", runs uniformly random actions on the very test episodes every run
was evaluated on (same environments, same reset seeds per seed), so a task a trained policy
"solves" no better than chance shows up as such. Every row is printed, favourable or not.
"""
from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path

import numpy as np
import yaml

from mtl_platform.metrics import p_value_welch


def random_policy(config: dict, seed: int, tasks: list[str]) -> dict:
    """Test success of uniformly random actions on run ``seed``'s test episodes (the domain's
    evaluation environments and reset seeds)."""
    from mtl_platform_plugins.domains.metaworld import envs as mw
    from mtl_platform_plugins.domains.metaworld.domain import TEST
    from mtl_platform_plugins.domains.metaworld.evaluation import run_episodes

    domain = config["domain"]
    horizon = domain.get("max_episode_steps", mw.MAX_PATH_LENGTH)
    envs = mw.make_vector(tasks, seed + 1, horizon, "sync")
    rng = np.random.default_rng(seed)
    low, high = envs.single_action_space.low, envs.single_action_space.high
    try:
        success, returns = run_episodes(lambda obs: rng.uniform(low, high, size=(len(obs), len(low))), envs,
                                  domain.get("eval_episodes", 10), horizon, seed, TEST)
    finally:
        envs.close()
    return {"test": {t: {"success": float(s), "return": float(r)} for t, s, r in zip(tasks, success, returns)},
            "seed": seed}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("sweep", type=Path)
    ap.add_argument("--no-random", action="store_true", help="leave out the random-policy control row")
    args = ap.parse_args()
    cells = [c for c in json.loads((args.sweep / "sweep.json").read_text())["cells"] if c["status"] == "done"]
    rows: dict[str, list[dict]] = defaultdict(list)
    tasks: list[str] = []
    config: dict = {}
    for cell in cells:
        run = Path(cell["run_dir"])
        results = json.loads((run / "results.json").read_text())
        tasks = list(results["test"])
        config = yaml.safe_load((run / "config.yaml").read_text())
        rows[cell["overrides"]["weighting.name"]].append(results)
    seeds = sorted({int(c["overrides"]["train.seed"]) for c in cells})
    if not args.no_random:
        rows["random policy (control)"] = [random_policy(config, s, tasks) for s in seeds]

    for metric, fmt in (("success", ".2f"), ("return", ".0f")):
        print(f"\n{metric} (test, final epoch; mean ± std over seeds)\n")
        table(rows, tasks, metric, fmt)


def table(rows: dict, tasks: list[str], metric: str, fmt: str) -> None:
    def value(results: dict, task: str) -> float:
        return results["test"][task][metric]

    def mean_over_tasks(results: dict) -> float:
        return statistics.mean(value(results, t) for t in tasks)

    def stat(values: list[float]) -> str:
        sd = statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{statistics.mean(values):{fmt}} ± {sd:{fmt}}"

    ew = [mean_over_tasks(r) for r in rows.get("ew", [])]
    print("| weighting | seeds | " + " | ".join(t.removesuffix("-v3") for t in tasks) + " | mean | Δ vs EW (Welch p) |")
    print("|---|---|" + "---|" * (len(tasks) + 2))
    for name, results in rows.items():
        means = [mean_over_tasks(r) for r in results]
        if name == "ew" or not ew:
            versus = "–"
        else:
            p = p_value_welch(means, ew)
            gap = statistics.mean(means) - statistics.mean(ew)
            versus = f"{gap:+{fmt}}" + (f" (p {p:.2f})" if p is not None else "")
        cells_ = [stat([value(r, t) for r in results]) for t in tasks]
        print(f"| {name} | {len(results)} | " + " | ".join(cells_) + f" | {stat(means)} | {versus} |")


if __name__ == "__main__":
    main()
