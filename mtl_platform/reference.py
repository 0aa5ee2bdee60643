"""Generated reference pages: the config keys and the weighting catalogue, written from the
declared parameters and the registry so the docs cannot drift from the code.

    python -m mtl_platform.reference        # rewrites the generated tails of docs/*.md
"""
from __future__ import annotations

from pathlib import Path

from .config import DEFAULTED_KEYS, FIXED_SECTIONS
from .params import flatten

MARK = "<!-- generated -->\n"


def _table(params) -> list[str]:
    rows = ["| key | type | default | meaning |", "|---|---|---|---|"]
    for p in params:
        default = "required" if p.required else f"`{p.default!r}`"
        rows.append(f"| `{p.name}` | {p.describe_allowed()} | {default} | {p.help} |")
    return rows


def _param_list(comp) -> str:
    """A component's parameters with their defaults, as one table cell."""
    return ", ".join(f"`{p.name}`={p.default!r}" for p in flatten(comp.params)) or "-"


def _component_rows(registry, kind: str) -> list[str]:
    """The table of the built-in components of ``kind``: name, parameters, summary."""
    return ["| name | parameters | what it is |", "|---|---|---|"] + [
        f"| `{comp.name}` | {_param_list(comp)} | {comp.summary} |" for comp in registry.components(kind)]


def config_markdown() -> str:
    """The config reference (docs/config.md's generated part) from the declared parameters and
    the defaults the built-in plugins declare."""
    from .contracts import Domain
    from .registry import load

    registry, _ = load(builtin_only=True)
    declared = registry.defaults()
    lines = ["## `domain`, `architecture`, `weighting`", "",
             "Each is a component: a bare name (`weighting: ew`) or a mapping with `name` and the "
             "component's own parameters (`mtl list` prints them). `domain` is required; a config "
             "without `architecture` or `weighting` gets the component a plugin declares as the "
             "default (`registry.set_default`, docs/writing-a-plugin.md), as do "
             "`baselines.stl_architecture` and `baselines.stl_weighting` when null (a searched "
             "architecture may bring its own default weighting). The built-in plugins declare:", "",
             "| key | default | declared by |", "|---|---|---|"]
    lines += [f"| `{key}` | `{declared[key][0]}` | {declared[key][1]} |" for key in DEFAULTED_KEYS if key in declared]
    lines += ["", "Every domain also takes:", ""]
    lines += _table(Domain.base_params) + [""]
    lines += ["## `closure`", "",
              "Null by default: the domain's ordinary update. A closure method (docs/pga.md, \"The closure "
              "seam\") re-evaluates the batch's losses at perturbed parameters and steps the base optimizer "
              "itself; name one as `closure: sam` or `closure: {name: pga, radius: 0.001}` (on the command line "
              "`--set closure.name=sam`). It is left out of run hashes while null. The built-in closure methods:", ""]
    lines += _component_rows(registry, "closure") + [""]
    lines += ["## `loggers`", "",
              "A list of loggers, empty by default: each a name or a mapping with `name` and its parameters, "
              "e.g. `loggers: [tensorboard, csv]` (on the command line `--set 'loggers=[csv]'`). They write the "
              "run's scalars (every number of `metrics.jsonl` and `diagnostics.jsonl`) as it trains, through the "
              "training-loop hooks; how a run is logged is not what it learns, so the list is left out of run "
              "hashes. A third-party logger is a plugin like any other (docs/writing-a-plugin.md, docs/report.md). "
              "The built-in loggers:", ""]
    lines += _component_rows(registry, "logger") + [""]
    for section, params in FIXED_SECTIONS.items():
        lines += [f"## `{section}`", ""] + _table(params) + [""]
    return "\n".join(lines)


def weightings_markdown(plugin: str = "mtl_platform.weightings") -> str:
    """The catalogue of the built-in weightings: what each needs, its kind, its parameters."""
    from .registry import load

    registry, _ = load(builtin_only=True)
    lines = ["| name | needs | kind | parameters | what it is |", "|---|---|---|---|---|"]
    for comp in registry.components("weighting"):
        if comp.plugin != plugin:
            continue
        cls = comp.cls
        kind = "loss weighting" if cls.scales_heads else "gradient method"
        lines.append(f"| `{comp.name}` | {cls.needs.name} | {kind} | {_param_list(comp)} | {comp.summary} |")
    return "\n".join(lines) + "\n"


def architectures_markdown(plugin: str = "mtl_platform.architectures") -> str:
    """The catalogue of the built-in architectures: parameters, rep mode, what each is."""
    from .registry import load

    registry, _ = load(builtin_only=True)
    lines = ["| name | rep mode | parameters | what it is |", "|---|---|---|---|"]
    for comp in registry.components("architecture"):
        if comp.plugin != plugin:
            continue
        rep = "yes" if comp.cls.has_rep else "no (param)"
        lines.append(f"| `{comp.name}` | {rep} | {_param_list(comp)} | {comp.summary} |")
    return "\n".join(lines) + "\n"


PAGES = {"docs/config.md": config_markdown, "docs/weightings.md": weightings_markdown,
         "docs/architectures.md": architectures_markdown}


def update(root: str | Path = ".") -> None:
    for rel, make in PAGES.items():
        path = Path(root) / rel
        head = path.read_text().split(MARK, 1)[0]
        path.write_text(head + MARK + make())


if __name__ == "__main__":  # pragma: no cover
    update()
