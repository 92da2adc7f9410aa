"""The dashboard page: filters, a figure per series, and the commits of every step."""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from pathlib import Path

from invbench.analysis.history.changepoints import Analysis
from invbench.analysis.history.links import range_url
from invbench.analysis.history.series import Point
from invbench.core.formatting import fmt_ms
from invbench.render.dashboard.graph import range_anchor, series_svg

FILTERS = ("suite", "backend", "case", "dtype", "mode", "machine")

_STYLE = """
body { font: 14px system-ui, sans-serif; margin: 1.5em; color: #222; }
header { position: sticky; top: 0; background: #fff; padding: .5em 0;
  border-bottom: 1px solid #ddd; }
label { margin-right: 1em; }
figure.graph { margin: 1em 0; padding: .5em; border: 1px solid #eee; }
figure.graph[hidden] { display: none; }
figcaption { font-weight: 600; }
.steps { font-size: 13px; } .slower { color: #b00; } .faster { color: #070; }
table { border-collapse: collapse; } td, th { padding: 2px 8px; border-bottom: 1px solid #eee; }
code { font-size: 12px; } #errors:empty { display: none; } #errors { color: #b00; }
"""

# Filters: a select per dimension; a figure is shown when every select is "" or its value.
# The URL hash (#backend=unfold&mode=fwd) sets the selects on load, through the same
# change events a person's choice fires. Errors land in #errors; data-ready marks the end.
_SCRIPT = """
const errors = [];
window.addEventListener("error", (e) => { errors.push(String(e.message)); report(); });
function report() { document.getElementById("errors").textContent = errors.join("\\n"); }
function applyFilters() {
  const want = {};
  for (const sel of document.querySelectorAll("select.filter")) want[sel.name] = sel.value;
  let shown = 0;
  const figures = document.querySelectorAll("figure.graph");
  for (const fig of figures) {
    const ok = Object.entries(want).every(([k, v]) => v === "" || fig.dataset[k] === v);
    fig.hidden = !ok;
    if (ok) shown += 1;
  }
  document.getElementById("shown").textContent = shown + " of " + figures.length + " series shown";
  document.body.dataset.shown = String(shown);
}
function measure() {  // how many graphs the browser laid out with something drawn in them
  let drawn = 0;
  for (const fig of document.querySelectorAll("figure.graph")) {
    const svg = fig.querySelector("svg");
    if (!svg) continue;
    const box = svg.getBoundingClientRect();
    const marks = svg.querySelectorAll("path, use").length;
    fig.dataset.drawn = box.width > 0 && box.height > 0 && marks > 0 ? "yes" : "no";
    if (fig.dataset.drawn === "yes") drawn += 1;
  }
  document.body.dataset.drawn = String(drawn);
}
document.addEventListener("DOMContentLoaded", () => {
  for (const sel of document.querySelectorAll("select.filter")) {
    sel.addEventListener("change", applyFilters);
  }
  measure();  // every graph is shown at this point
  const params = new URLSearchParams(location.hash.slice(1));
  for (const [key, value] of params) {
    const sel = document.querySelector(`select.filter[name="${key}"]`);
    if (sel && [...sel.options].some((o) => o.value === value)) {
      sel.value = value;
      sel.dispatchEvent(new Event("change"));
    }
  }
  applyFilters();
  document.body.dataset.ready = "1";
});
"""


def _esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def _dims(a: Analysis) -> dict[str, str]:
    s = a.series
    return {
        "suite": s.suite,
        "backend": str(s.key["backend"]),
        "case": str(s.key["case"]),
        "dtype": str(s.key["dtype"]),
        "mode": str(s.key["mode"]),
        "machine": s.machine_id[:6],
    }


def _select(name: str, values: Sequence[str], labels: dict[str, str]) -> str:
    options = ['<option value="">all</option>'] + [
        f'<option value="{_esc(v)}">{_esc(labels.get(v, v))}</option>' for v in values
    ]
    return f'<label>{name} <select class="filter" name="{name}">{"".join(options)}</select></label>'


def _commit_list(points: Sequence[Point], template: str | None) -> str:
    items = []
    for p in points:
        url = range_url(template, p.commit, p.commit)
        commit = f"<code>{_esc(p.commit[:10])}</code>"
        if url and template and "{bad}" in template:
            commit = f'<a href="{_esc(url)}">{commit}</a>'
        items.append(f"<li>{commit} {_esc(p.commit_time[:19])} {_esc(p.subject)}</li>")
    return "<ul>" + "".join(items) + "</ul>"


def _figure(a: Analysis, template: str | None, ranges: dict[str, str]) -> str:
    s = a.series
    urls, rows = [], []
    for step in a.steps:
        anchor = range_anchor(step.good.commit, step.bad.commit)
        ranges.setdefault(anchor, "")
        urls.append(f"#{anchor}")
        external = range_url(template, step.good.commit, step.bad.commit)
        link = f' (<a href="{_esc(external)}">compare</a>)' if external else ""
        kind = "slower" if step.regression else "faster"
        rows.append(
            f'<tr class="{kind}"><td><a href="#{anchor}"><code>{_esc(step.good.commit[:8])}'
            f"..{_esc(step.bad.commit[:8])}</code></a>{link}</td>"
            f"<td>{fmt_ms(step.before_ms)} → {fmt_ms(step.after_ms)}</td>"
            f"<td>{step.size:+.1%} ({kind})</td><td>confidence {step.confidence:.2%}</td></tr>"
        )
    seg = a.segments[-1]
    band = (
        f"noise band {fmt_ms(seg.low_ms)} – {fmt_ms(seg.high_ms)} (±{seg.noise:.1%} per run)"
        if seg.noise is not None
        else "noise band unknown (fewer than three runs)"
    )
    data = " ".join(f'data-{k}="{_esc(v)}"' for k, v in _dims(a).items())
    steps = f'<table class="steps">{"".join(rows)}</table>' if rows else ""
    return (
        f'<figure class="graph" id="series-{s.id}" {data}>'
        f"<figcaption>{_esc(s.suite)} · {_esc(s.label)} · {_esc(s.machine)}</figcaption>"
        f"{series_svg(a, urls)}"
        f"<div>{len(s.points)} commit{'s' if len(s.points) != 1 else ''}, "
        f"latest {fmt_ms(s.points[-1].ms)}, "
        f"level {fmt_ms(seg.level_ms)}, {band}</div>{steps}</figure>"
    )


def render(analyses: Sequence[Analysis], template: str | None, title: str) -> str:
    ranges: dict[str, str] = {}
    figures = [_figure(a, template, ranges) for a in analyses]
    for a in analyses:
        for step in a.steps:
            anchor = range_anchor(step.good.commit, step.bad.commit)
            if ranges.get(anchor):
                continue
            points = a.series.points[step.index - 1 : step.index + 1]
            external = range_url(template, step.good.commit, step.bad.commit)
            link = f'<p><a href="{_esc(external)}">compare on the forge</a></p>' if external else ""
            ranges[anchor] = (
                f'<section id="{anchor}"><h3>commits {_esc(step.good.commit[:10])}..'
                f"{_esc(step.bad.commit[:10])}</h3><p>last commit at the old level, then the "
                f"first at the new one; any commit between them was not measured.</p>"
                f"{_commit_list(points, template)}{link}</section>"
            )
    dims = [_dims(a) for a in analyses]
    machine_labels = {a.series.machine_id[:6]: a.series.machine for a in analyses}
    selects = "".join(
        _select(name, sorted({d[name] for d in dims}), machine_labels if name == "machine" else {})
        for name in FILTERS
    )
    meta = json.dumps({"series": len(analyses), "steps": sum(len(a.steps) for a in analyses)})
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="en"><head><meta charset="utf-8"><title>{_esc(title)}</title>'
        f'<meta name="viewport" content="width=device-width">'
        f"<style>{_STYLE}</style><script>{_SCRIPT}</script></head>"
        f"<body data-ready=\"0\" data-summary='{_esc(meta)}'>"
        f'<header><h1>{_esc(title)}</h1><div>{selects}</div><p id="shown"></p>'
        f'<pre id="errors"></pre></header>'
        f"<main>{''.join(figures)}</main>"
        f"<h2>Steps and their commits</h2>{''.join(ranges.values()) or '<p>No steps.</p>'}"
        "</body></html>\n"
    )


def write_dashboard(
    analyses: Sequence[Analysis], out_dir: Path, template: str | None, title: str
) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    page = out_dir / "index.html"
    tmp = out_dir / ".index.html.tmp"
    tmp.write_text(render(analyses, template, title), encoding="utf-8")
    tmp.replace(page)
    return page
