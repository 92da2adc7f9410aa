"""One series over commits as inline SVG: runs, commits, levels, noise band and steps."""

from __future__ import annotations

import io
import re

from invbench.analysis.history.changepoints import Analysis
from invbench.render.plots.style import backend_style

_XML_HEAD = re.compile(r"^.*?(?=<svg)", re.S)
_METADATA = re.compile(r"<metadata>.*?</metadata>\s*", re.S)


def range_anchor(good: str, bad: str) -> str:
    return f"range-{good[:10]}-{bad[:10]}"


def series_svg(analysis: Analysis, step_urls: list[str]) -> str:
    """The series drawn with matplotlib; step i links to step_urls[i]."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = analysis.series
    colour = backend_style(str(series.key["backend"])).color
    with plt.rc_context({"svg.fonttype": "none", "font.size": 8, "svg.hashsalt": series.id}):
        fig, ax = plt.subplots(figsize=(6.4, 2.0), layout="constrained")
        try:
            xs = range(len(series.points))
            for x, point in zip(xs, series.points, strict=True):
                ax.plot([x] * len(point.run_ms), point.run_ms, ".", color=colour, alpha=0.35, ms=3)
            ax.plot(list(xs), series.values, "-o", color=colour, lw=1, ms=3, label="median of runs")
            for seg in analysis.segments:
                x0, x1 = seg.start - 0.4, seg.stop - 0.6
                if seg.low_ms is not None and seg.high_ms is not None:
                    ax.fill_between(
                        [x0, x1], seg.low_ms, seg.high_ms, color="0.6", alpha=0.25, lw=0
                    )
                ax.plot([x0, x1], [seg.level_ms] * 2, color="0.25", lw=1)
            for step, url in zip(analysis.steps, step_urls, strict=True):
                line = ax.axvline(step.index - 0.5, color="#D55E00", ls="--", lw=1.2)
                line.set_url(url)
                line.set_gid(f"step-{series.id}-{step.index}")
                label = ax.annotate(
                    f"{step.size:+.0%}",
                    (step.index - 0.5, 1.0),
                    xycoords=("data", "axes fraction"),
                    ha="center",
                    va="bottom",
                    color="#D55E00",
                )
                label.set_url(url)
            ax.set_yscale("log")  # a slow run 100x off does not flatten the rest
            ax.set_ylabel("median (ms)")
            ax.set_xlim(-0.6, max(len(series.points) - 0.4, 0.6))
            ticks = list(xs)
            if len(ticks) > 12:
                ticks = ticks[:: max(1, len(ticks) // 12)]
            ax.set_xticks(ticks, [series.points[i].commit[:7] for i in ticks], rotation=30)
            ax.tick_params(labelsize=7)
            ax.grid(axis="y", color="0.9")
            buf = io.StringIO()
            fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
        finally:
            plt.close(fig)
    return _METADATA.sub("", _XML_HEAD.sub("", buf.getvalue(), count=1), count=1)
