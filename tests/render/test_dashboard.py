"""The history dashboard in a real headless Chromium: loads clean, draws, filters."""

from __future__ import annotations

import math
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from invbench.analysis.history.changepoints import analyse
from invbench.analysis.history.series import build_series
from invbench.analysis.history.store import HistoryStore
from invbench.render.dashboard import write_dashboard

from ..analysis.history.helpers import commit_name, row, write_run

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="needs Chromium (Debian package chromium; .ci/run installs it)"
)


def load(url: str) -> tuple[str, list[str]]:
    """The DOM after the page's scripts ran, and every console line the page produced."""
    assert CHROMIUM is not None
    done = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--enable-logging=stderr", "--v=0", "--virtual-time-budget=5000", "--dump-dom", url],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    console = [line for line in done.stderr.splitlines() if ":CONSOLE" in line]
    return done.stdout, console


def body_data(dom: str, name: str) -> str:
    match = re.search(rf'<body[^>]*\bdata-{name}="([^"]*)"', dom)
    assert match, f"no data-{name} on <body>"
    return match.group(1)


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four series over 16 commits (unfold fwd 20% slower from commit 8) as a dashboard."""
    root = tmp_path_factory.mktemp("dash")
    store = HistoryStore(root / "h")
    rng = np.random.default_rng(7)
    for i in range(16):
        noise = [math.exp(rng.normal(0, 0.01)) for _ in range(4)]
        medians = {"unfold": (1.0 if i < 8 else 1.2) * noise[0], "conv3x3": 2.0 * noise[1]}
        extra = [row("unfold", 3.0 * noise[2], mode="fwd+bwd"),
                 row("conv3x3", 4.0 * noise[3], mode="fwd+bwd")]  # fmt: skip
        time = f"2026-01-01T00:{i:02d}:00+00:00"
        store.add(write_run(root / f"r{i}", commit_name(i), medians, time=time, extra_rows=extra))
    analyses = [analyse(s) for s in build_series(store.rows(ok_only=True))]
    assert sum(len(a.steps) for a in analyses) == 1
    return write_dashboard(analyses, root / "site", None, "test history")


@needs_chromium
def test_the_dashboard_loads_without_console_output_and_draws_every_graph(page: Path) -> None:
    dom, console = load(page.as_uri())
    assert console == []
    assert body_data(dom, "ready") == "1"
    assert body_data(dom, "drawn") == "4"  # laid out with a size and marks in each graph
    assert body_data(dom, "shown") == "4"
    assert dom.count('data-drawn="yes"') == 4
    assert '<pre id="errors"></pre>' in dom
    anchor = f"range-{commit_name(7)[:10]}-{commit_name(8)[:10]}"
    assert f'href="#{anchor}"' in dom and f'id="{anchor}"' in dom  # step -> its commits


@needs_chromium
def test_a_filter_changes_what_is_shown(page: Path) -> None:
    dom, console = load(page.as_uri() + "#backend=unfold&mode=fwd")
    assert console == []
    assert body_data(dom, "shown") == "1"
    figures = re.findall(r"<figure [^>]*>", dom)
    shown = [f for f in figures if " hidden" not in f]
    assert len(figures) == 4 and len(shown) == 1
    assert 'data-backend="unfold"' in shown[0] and 'data-mode="fwd"' in shown[0]
    assert "1 of 4 series shown" in dom


@needs_chromium
def test_the_console_check_sees_a_broken_page(tmp_path: Path) -> None:
    broken = tmp_path / "broken.html"
    broken.write_text("<html><body><script>notDefined();</script></body></html>")
    _, console = load(broken.as_uri())
    assert any("notDefined" in line for line in console)
