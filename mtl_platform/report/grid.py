"""The sweep's grid table (``grid.md``): the report's groups laid out like a paper's results
table, one row per value of every grid key but the last, one column per value of the last."""
from __future__ import annotations

from mtl_platform import metrics


def grid_table(done: list[dict], rep: dict) -> str | None:
    """A Markdown table of the grid, laid out like a paper's results table: one row per value
    of every grid key but the last, one column per value of the last. Each cell gives the
    headline metric (the first Δp metric of the first task) as mean ± std over seeds; Δp
    against the STL baselines with the one-sample p-value of its per-seed values; in every
    column after the first, the gain over the same row's first column (Welch's p on per-seed
    Δp), e.g. method + GH against the method alone; and how often the tasks' gradients
    conflicted. A line above gives the STL baseline when every cell shares it (UDA: source
    only). The ``--cell`` cells (``extra`` set) follow in a table of their own, one row each,
    named by their assignments (with no grid, CONFIG as it is is its first row). None for a
    1-D grid without seeds to aggregate and no extra cell, or when the report has no metric."""
    grid_done = [c for c in done if not c.get("extra")]
    extra_done = [c for c in done if c.get("extra")]
    keys = [k for k in (grid_done[0]["overrides"] if grid_done else {}) if k != "train.seed"]
    if not keys and not extra_done:
        return None
    by_dir = {str(c["run_dir"]): c for c in done}
    cells: dict[tuple, dict] = {}
    extras: dict[str, dict] = {}
    task = metric = None
    for group in rep["groups"]:
        cell = by_dir.get(str(group["run_dirs"][0]))
        if cell is None:
            continue
        for t, entry in group["tasks"].items():
            for m, row in entry["metrics"].items():
                if row["in_delta_p"] and task is None:
                    task, metric = t, m
        row = group["tasks"][task]["metrics"][metric] if task else None
        if row is None:
            continue
        if cell.get("extra"):
            extras[cell["extra"]] = {"row": row, "group": group}
        elif keys:
            cells[tuple(cell["overrides"][k] for k in keys)] = {"row": row, "group": group}
        else:
            extras["(CONFIG as is)"] = {"row": row, "group": group}
    if not cells and not extras:
        return None
    rows = list(dict.fromkeys(k[:-1] for k in cells))
    cols = list(dict.fromkeys(k[-1] for k in cells))

    def pm(stat, n, fmt=".4f"):
        return f"{stat['mean']:{fmt}}" + (f" ± {stat['std']:{fmt.lstrip('+')}}" if n > 1 else "")

    def describe(entry, first=None):
        row, group = entry["row"], entry["group"]
        n = len(group["seeds"])
        parts = [pm(row["mtl"], n)]
        dp = group["delta_p_percent"]
        if dp is not None:
            p = f" (p {dp['p_value']:.3f})" if dp.get("p_value") is not None else ""
            parts.append(f"Δp {pm(dp, n, '+.2f')} %{p}")
        if first is not None:
            gain = row["mtl"]["mean"] - first["row"]["mtl"]["mean"]
            a, b = first["group"]["delta_p_percent"], dp
            welch = (metrics.p_value_welch(a["per_seed"], b["per_seed"]) if a and b else None)
            parts.append(f"vs {cols[0]}: {gain:+.4f}" + (f" (p {welch:.3f})" if welch is not None else ""))
        if group.get("conflict_percent"):
            parts.append(f"conflict {group['conflict_percent']['mean']:.0f} %")
        return "<br>".join(parts)

    def text(key):
        if key not in cells:
            return "–"
        first = cells.get(key[:-1] + (cols[0],)) if key[-1] != cols[0] else None
        return describe(cells[key], first)

    lines = [f"{task} {metric}, mean ± std over seeds; Δp vs the STL baselines (p: one-sample t-test "
             f"of the per-seed Δp); gains over the first column (p: Welch); gradient-conflict rate", ""]
    every = list(cells.values()) + list(extras.values())
    stls = {(c["row"]["stl"]["mean"], c["row"]["stl"]["std"]) for c in every if c["row"]["stl"]}
    if len(stls) == 1 and all(c["row"]["stl"] for c in every):
        n = len(every[0]["group"]["seeds"])
        lines += [f"STL baseline (every cell's): {pm(every[0]['row']['stl'], n)}", ""]
    if cells:
        head = " / ".join(keys[:-1]) or "·"
        lines += [f"| {head} | " + " | ".join(f"{keys[-1]}={c}" for c in cols) + " |",
                  "|---|" + "---|" * len(cols)]
        for r in rows:
            lines.append(f"| {' / '.join(r) or '·'} | " + " | ".join(text(r + (c,)) for c in cols) + " |")
    if extras:
        if cells:
            lines.append("")
        lines += ["| --cell (CONFIG and --set with these assignments, no grid value) | "
                  f"{task} {metric} |", "|---|---|"]
        lines += ["| " + name.replace("|", "\\|") + f" | {describe(entry)} |" for name, entry in extras.items()]
    return "\n".join(lines)
