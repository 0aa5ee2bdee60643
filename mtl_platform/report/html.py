"""The report as ONE self-contained HTML page (``report.html``): no network at all — figures
inlined as base64 PNG ``data:`` URIs, CSS inline, no script, font or external link — and a
Content-Security-Policy that forbids anything else, so a browser makes no request even if a
value in the page looked like a URL.

Sections (each a ``<section id=…>``): ``safe-mtl`` (per group the MTL/STL table with Δ and the
safe column, Δp and η), ``delta`` (relative Δ per task: figure and table), ``seeds`` (per-seed
Δp and η, the reported epochs), ``p-values`` (Δp against zero, and the Welch comparisons),
``curves`` (training loss and test metric per task over the epochs), ``dynamics`` (task-weight,
conflict and cosine traces from ``diagnostics.jsonl``), ``pareto`` (for 2 or 3 tasks), and
``config`` (each group's resolved ``config.yaml``).
"""
from __future__ import annotations

import base64
from html import escape
from pathlib import Path

from mtl_platform import runs

from .pareto import pareto_figure
from .plots import curves_figure, delta_figure, png_bytes, training_figure
from .render import _fmt, _header, _p, _summary, _table, _title

#: what the page may load: images from data: URIs, its own inline CSS; nothing else
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
SECTIONS = {"safe-mtl": "Safe-MTL table", "delta": "Δ per task", "seeds": "Seeds", "p-values": "p-values",
            "curves": "Training curves per task", "dynamics": "Weights and gradient conflicts",
            "pareto": "Pareto front", "config": "Resolved config"}

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
nav a { margin-right: 1em; }
table { border-collapse: collapse; margin: 0.5em 0 1em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; }
th { background: #f3f3f3; }
td.unsafe { color: #b00020; font-weight: bold; }
td.safe { color: #1b5e20; }
img { max-width: 100%; border: 1px solid #eee; }
pre { background: #f7f7f7; padding: 0.8em; overflow-x: auto; }
p.note { color: #666; }
"""


def image(fig, alt: str) -> str:
    """``fig`` as an inline ``<img>`` (base64 PNG), or a note when there is nothing to draw."""
    if fig is None:
        return f'<p class="note">{escape(alt)}: nothing to draw.</p>'
    data = base64.b64encode(png_bytes(fig)).decode("ascii")
    return f'<img alt="{escape(alt)}" src="data:image/png;base64,{data}">'


def table(header: list[str], rows: list[list[str]]) -> str:
    def cell(text: str) -> str:
        cls = {"UNSAFE": ' class="unsafe"', "safe": ' class="safe"'}.get(text, "")
        return f"<td{cls}>{escape(str(text))}</td>"

    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(cell(c) for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def section(key: str, body: str) -> str:
    return f'<section id="{key}"><h2>{escape(SECTIONS[key])}</h2>\n{body}\n</section>'


def _safe_mtl(report: dict) -> str:
    parts = []
    for group in report["groups"]:
        parts.append(f"<h3>{escape(_title(group))}</h3>")
        parts.append(table(_header(group), _table(group)))
        parts.append("<ul>" + "".join(f"<li>{escape(line)}</li>" for line in _summary(group)) + "</ul>")
    return "\n".join(parts)


def _delta(report: dict) -> str:
    tasks = list(dict.fromkeys(t for g in report["groups"] for t in g["tasks"]))
    rows = [[g["label"], *(_fmt(g["tasks"].get(t, {}).get("relative_delta_percent"), len(g["seeds"]), "+.2f")
                           for t in tasks)] for g in report["groups"]]
    return (image(delta_figure(report), "relative Δ per task") +
            table(["group", *(f"{t}: relative Δ (%)" for t in tasks)], rows))


def _seeds(report: dict) -> str:
    rows = []
    for g in report["groups"]:
        dp = (g["delta_p_percent"] or {}).get("per_seed") or [None] * len(g["seeds"])
        eta = (g["eta_percent"] or {}).get("per_seed") or [None] * len(g["seeds"])
        for seed, epoch, d, e, run_dir in zip(g["seeds"], g["epochs"], dp, eta, g["run_dirs"]):
            rows.append([g["label"], str(seed), str(epoch + 1), "n/a" if d is None else f"{d:+.2f}",
                         "n/a" if e is None else f"{e:.0f}", run_dir])
    return table(["group", "seed", "reported epoch", "Δp (%)", "η (%)", "run"], rows)


def _p_values(report: dict) -> str:
    rows = [[g["label"], str(len(g["seeds"])),
             "n/a" if g["delta_p_percent"] is None else f"{g['delta_p_percent']['mean']:+.2f}",
             _p((g["delta_p_percent"] or {}).get("p_value"))] for g in report["groups"]]
    out = ("<p>Δp against zero: one-sample t-test on the per-seed Δp (fewer than 3 seeds: n/a).</p>" +
           table(["group", "seeds", "mean Δp (%)", "p"], rows))
    if report["comparisons"]:
        rows = [[c["label"], c["baseline_label"],
                 "n/a" if c["delta_p_difference_percent"] is None else f"{c['delta_p_difference_percent']:+.2f}",
                 _p(c["p_value"])] for c in report["comparisons"]]
        out += ("<p>Each later group against the first: Welch's t-test on per-seed Δp.</p>" +
                table(["group", "vs", "Δp difference (%)", "Welch p"], rows))
    return out


def _config(report: dict) -> str:
    parts = []
    for g in report["groups"]:
        path = Path(g["run_dirs"][0]) / runs.CONFIG_FILE
        text = path.read_text() if path.is_file() else f"({path} not found)"
        parts.append(f"<h3>{escape(_title(g))}</h3><pre>{escape(text)}</pre>")
    return "\n".join(parts)


def render_html(report: dict) -> str:
    """The whole page."""
    body = [
        section("safe-mtl", _safe_mtl(report)),
        section("delta", _delta(report)),
        section("seeds", _seeds(report)),
        section("p-values", _p_values(report)),
        section("curves", image(curves_figure(report), "training curves per task")),
        section("dynamics", image(training_figure(report), "task weights, conflicting pairs and cosines "
                                  "(no diagnostics.jsonl: gradients.diagnostics_every was 0)")),
        section("pareto", image(pareto_figure(report), "runs in task-metric space (2 or 3 tasks only)")),
        section("config", _config(report)),
    ]
    nav = "".join(f'<a href="#{k}">{escape(v)}</a>' for k, v in SECTIONS.items())
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
            "<title>Safe-MTL report</title>"
            f"<style>{STYLE}</style></head>\n<body><h1>Safe-MTL report</h1><nav>{nav}</nav>\n"
            + "\n".join(body) + "\n</body></html>\n")
