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
    only). None for a 1-D grid without seeds to aggregate or when the report has no metric."""
    keys = [k for k in (done[0]["overrides"] if done else {}) if k != "train.seed"]
    if not keys:
        return None
    by_dir = {str(c["run_dir"]): c for c in done}
    cells: dict[tuple, dict] = {}
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
        if row is not None:
            cells[tuple(cell["overrides"][k] for k in keys)] = {"row": row, "group": group}
    if not cells:
        return None
    rows = list(dict.fromkeys(k[:-1] for k in cells))
    cols = list(dict.fromkeys(k[-1] for k in cells))

    def pm(stat, n, fmt=".4f"):
        return f"{stat['mean']:{fmt}}" + (f" ± {stat['std']:{fmt.lstrip('+')}}" if n > 1 else "")

    def text(key):
        if key not in cells:
            return "–"
        row, group = cells[key]["row"], cells[key]["group"]
        n = len(group["seeds"])
        parts = [pm(row["mtl"], n)]
        dp = group["delta_p_percent"]
        if dp is not None:
            p = f" (p {dp['p_value']:.3f})" if dp.get("p_value") is not None else ""
            parts.append(f"Δp {pm(dp, n, '+.2f')} %{p}")
        first = cells.get(key[:-1] + (cols[0],))
        if key[-1] != cols[0] and first is not None:
            gain = row["mtl"]["mean"] - first["row"]["mtl"]["mean"]
            a, b = first["group"]["delta_p_percent"], dp
            welch = (metrics.p_value_welch(a["per_seed"], b["per_seed"]) if a and b else None)
            parts.append(f"vs {cols[0]}: {gain:+.4f}" + (f" (p {welch:.3f})" if welch is not None else ""))
        if group.get("conflict_percent"):
            parts.append(f"conflict {group['conflict_percent']['mean']:.0f} %")
        return "<br>".join(parts)

    lines = [f"{task} {metric}, mean ± std over seeds; Δp vs the STL baselines (p: one-sample t-test "
             f"of the per-seed Δp); gains over the first column (p: Welch); gradient-conflict rate", ""]
    stls = {(c["row"]["stl"]["mean"], c["row"]["stl"]["std"]) for c in cells.values() if c["row"]["stl"]}
    if len(stls) == 1 and all(c["row"]["stl"] for c in cells.values()):
        n = len(next(iter(cells.values()))["group"]["seeds"])
        lines += [f"STL baseline (every cell's): {pm(next(iter(cells.values()))['row']['stl'], n)}", ""]
    head = " / ".join(keys[:-1]) or "·"
    lines += [f"| {head} | " + " | ".join(f"{keys[-1]}={c}" for c in cols) + " |",
              "|---|" + "---|" * len(cols)]
    for r in rows:
        lines.append(f"| {' / '.join(r) or '·'} | " + " | ".join(text(r + (c,)) for c in cols) + " |")
    return "\n".join(lines)
