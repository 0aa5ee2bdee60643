"""Derivation: a searched model's variables become a plain-JSON architecture (DESIGN.md §3.4)."""
from __future__ import annotations

import json
from pathlib import Path

from ..atomic import atomic_write_text
from ..checkpoint import load
from ..contracts.stage import Stage, StageContext
from ..experiment import build_architecture
from ..params import resolve_params
from . import margins

ARCHITECTURE_FILE = "architecture.json"


class DeriveStage(Stage):
    """Rebuild the searched model, load the final weights of stage ``source`` (the last
    epoch's α: ``model.pt``, read with ``weights_only=True``), call its ``derive()``, record
    each of its ``decisions()``' margin (``margins.record``: one warning line when some are
    below ``architecture.search.min_margin``) and write the answer to ``architecture.json``.
    Nothing is trained."""

    def __init__(self, name: str = "derive", source: str = "search"):
        self.name = name
        self.source = source

    def run(self, ctx: StageContext) -> dict:
        model = build_architecture(ctx.config, ctx.registry, ctx.domain)
        weights = Path(ctx.previous[self.source]["run_dir"]) / "model.pt"
        model.load_state_dict(load(weights))
        derived = model.derive()
        margins.record(derived, model.decisions(), min_margin(ctx.arch_config), self.name, ctx.echo)
        atomic_write_text(ctx.stage_dir / ARCHITECTURE_FILE, json.dumps(derived, indent=2) + "\n")
        ctx.echo(f"{self.name}: {describe(derived)}")
        return {"stage": self.name, "run_dir": str(ctx.stage_dir), "derived": derived,
                "searched_parameters": model.parameter_counts()}


def min_margin(arch_config: dict) -> float:
    """``architecture.search.min_margin`` (its default for an architecture without one)."""
    return float((arch_config.get("search") or {}).get("min_margin", margins.DEFAULT_MIN_MARGIN))


def describe(derived: dict) -> str:
    """One line: where each task branches, its gate, its learned weight and the smallest
    decision margin."""
    parts = []
    for key, label in (("branch_points", "branch point"), ("gates", "gate"), ("task_weights", "weight")):
        if derived.get(key):
            parts.append(f"{label}s " + ", ".join(f"{t}={v:.3g}" if isinstance(v, float) else f"{t}={v}"
                                                   for t, v in derived[key].items()))
    if derived.get("margins"):
        label, low = min(derived["margins"].items(), key=lambda kv: kv[1]["gap"])
        parts.append(f"smallest decision margin {low['gap']:.3g} ({label})")
    return "; ".join(parts) or json.dumps(derived["architecture"])


def from_derived(source: str = "derive"):
    """A ``TrainStage.configure`` that trains the architecture derived in stage ``source``.

    The derived ``architecture`` section is validated against its component's parameters
    like a user's. A derived ``weighting`` section (what the search learned, e.g. task
    weights) completes the run's weighting when both name the same weighting: each key the
    run's section leaves null takes the derived value, and the result is validated like a
    user's section. A run's weighting of another name, or one with every key set, is
    trained as configured.
    """

    def configure(config: dict, ctx: StageContext) -> dict:
        derived = ctx.previous[source]["derived"]
        section = derived["architecture"]
        comp = ctx.registry.get("architecture", section["name"])
        config["architecture"] = resolve_params(comp.params, section, "derived architecture")
        config["weighting"] = completed(config["weighting"], derived.get("weighting"), ctx.registry)
        return config

    return configure


def completed(weighting: dict, learned: dict | None, registry) -> dict:
    """``weighting`` with its null keys taken from ``learned`` if both name the same weighting."""
    if not learned or learned["name"] != weighting["name"]:
        return weighting
    merged = {k: learned.get(k) if v is None else v for k, v in weighting.items()}
    return resolve_params(registry.get("weighting", weighting["name"]).params, merged, "derived weighting")
