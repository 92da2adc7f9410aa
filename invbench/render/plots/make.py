"""`invbench plot` as a library call: result directories + options -> figure files."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from invbench.core.choices import FigureKind, Format, Width
from invbench.render.plots.data import PlotError, check_baseline, sweep_field
from invbench.storage.results import ResultsError, ResultSet, combine_results, load_results

if TYPE_CHECKING:
    from invbench.render.plots.figures import FigureResult


DEFAULT_BASELINE = "unfold"
PLOTS_DIR = "plots"


@dataclass(frozen=True)
class PlotRequest:
    results: Sequence[Path]
    kinds: Sequence[FigureKind] = (FigureKind.ALL,)
    baseline: str | None = None  # None: DEFAULT_BASELINE, and skip speed-ups without it
    formats: Sequence[Format] = (Format.PNG,)
    out: Path | None = None  # None: RESULTS/plots for the first results directory
    width: Width = Width.SINGLE
    caption: bool = True
    dtypes: Sequence[str] = ()  # keep only these dtypes (default: all)
    modes: Sequence[str] = ()  # keep only these modes (default: all)


@dataclass
class PlotOutcome:
    files: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # kinds skipped under `all`, and why
    out_dir: Path = Path(PLOTS_DIR)


def load_sets(paths: Sequence[Path]) -> list[ResultSet]:
    """Load result directories; a missing or empty one is a PlotError (one line)."""
    if not paths:
        raise PlotError("give at least one results directory")
    sets = []
    for path in paths:
        if not Path(path).is_dir():
            raise PlotError(f"{path} is not a directory")
        try:
            rs = load_results(Path(path))
        except ResultsError as exc:
            raise PlotError(str(exc)) from None
        if rs.rows.empty:
            raise PlotError(f"{path} holds no result rows")
        sets.append(rs)
    return sets


def select(rs: ResultSet, dtypes: Sequence[str], modes: Sequence[str]) -> ResultSet:
    """The result set with only the rows (and samples) of the given dtypes and modes."""
    if not dtypes and not modes:
        return rs

    def keep(frame: pd.DataFrame) -> pd.DataFrame:
        if frame.empty:
            return frame
        mask = pd.Series(True, index=frame.index)
        if dtypes:
            mask &= frame["dtype"].isin(list(dtypes))
        if modes:
            mask &= frame["mode"].isin(list(modes))
        return frame[mask].reset_index(drop=True)

    rows = keep(rs.rows)
    if rows.empty:
        wanted = ", ".join([*dtypes, *modes])
        have = ", ".join(
            sorted({f"{d} {m}" for d, m in zip(rs.rows["dtype"], rs.rows["mode"], strict=True)})
        )
        raise PlotError(f"{rs.directory} has no {wanted} rows (it has: {have})")
    return replace(rs, rows=rows, samples=keep(rs.samples))


def _expand(kinds: Sequence[FigureKind]) -> tuple[list[FigureKind], bool]:
    """The kinds to make, and whether they came from `all` (then inapplicable ones are
    skipped with a note instead of failing)."""
    wanted = list(dict.fromkeys(kinds)) or [FigureKind.ALL]
    if FigureKind.ALL in wanted:
        return [k for k in FigureKind if k is not FigureKind.ALL], True
    return wanted, False


def make_plots(request: PlotRequest) -> PlotOutcome:
    """Make and write every requested figure; every input mistake is a PlotError."""
    sets = [select(rs, request.dtypes, request.modes) for rs in load_sets(request.results)]
    figures, notes = build_figures(request, sets)
    formats = list(dict.fromkeys(Format(f).value for f in request.formats)) or ["png"]
    out_dir = request.out or sets[0].directory / PLOTS_DIR
    outcome = PlotOutcome(notes=notes, out_dir=out_dir)
    for fig in figures:
        outcome.files.extend(fig.save(out_dir, formats))
    return outcome


def build_figures(
    request: PlotRequest, sets: Sequence[ResultSet]
) -> tuple[list[FigureResult], list[str]]:
    """The figures of a request, in memory, and notes on kinds skipped under `all`."""
    from invbench.render.plots import figures as F  # matplotlib is imported only here

    kinds, implicit = _expand(request.kinds)
    baseline = request.baseline or DEFAULT_BASELINE
    width = Width(request.width)
    notes: list[str] = []

    if FigureKind.SPEEDUP in kinds:
        for rs in sets:
            try:
                check_baseline(rs, baseline)
            except PlotError as exc:
                if implicit and request.baseline is None:
                    notes.append(f"speedup skipped: {exc}")
                    kinds = [k for k in kinds if k is not FigureKind.SPEEDUP]
                    break
                raise
    if FigureKind.COMPARE in kinds and len(sets) < 2:
        if not implicit:
            raise PlotError("--kind compare needs two results directories (A, then B)")
        kinds = [k for k in kinds if k is not FigureKind.COMPARE]
    if FigureKind.SWEEP in kinds and implicit:
        flat = [rs.directory.name for rs in sets if sweep_field(rs) is None]
        if flat:
            notes.append(f"sweep skipped for {', '.join(flat)}: no single shape field varies")

    results: list[FigureResult] = []
    prefix_needed = len(sets) > 1
    from invbench.render.plots.devices import by_device, speedup_by_device_figure

    for whole in sets:
        for device, rs in by_device(whole):
            prefix = f"{rs.directory.name}-" if prefix_needed else ""
            if len(by_device(whole)) > 1:
                prefix += _slug(device) + "-"
            for kind in kinds:
                if kind is FigureKind.COMPARE:
                    continue
                if kind is FigureKind.SWEEP and implicit and sweep_field(rs) is None:
                    continue
                try:
                    fig = _make_one(kind, rs, width, baseline, request.caption)
                except PlotError as exc:
                    if not implicit:
                        raise
                    notes.append(f"{kind.value} skipped: {exc}")  # e.g. no roofline for models
                    continue
                fig.stem = prefix + fig.stem
                results.append(fig)
    if FigureKind.SPEEDUP in kinds:
        try:
            several = combine_results(sets) if len(sets) > 1 else sets[0]
        except ResultsError:
            several = sets[0]  # runs that do not combine: no figure across them
        if len(by_device(several)) > 1:
            try:
                results.append(speedup_by_device_figure(several, width, baseline, request.caption))
            except PlotError as exc:
                if not implicit:
                    raise
                notes.append(f"speedup-by-device skipped: {exc}")
    if FigureKind.COMPARE in kinds:
        a = sets[0]
        for b in sets[1:]:
            fig = F.compare_figure(a, b, width, request.caption)
            if len(sets) > 2:
                fig.stem = f"compare-{b.directory.name}"
            results.append(fig)
    if not results:
        raise PlotError("no figure applies: " + "; ".join(notes))
    return results, notes


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower() or "device"


def _make_one(
    kind: FigureKind, rs: ResultSet, width: Width, baseline: str, caption: bool
) -> FigureResult:
    from invbench.render.plots import figures

    if kind is FigureKind.LATENCY:
        return figures.latency_figure(rs, width, caption)
    if kind is FigureKind.SPEEDUP:
        return figures.speedup_figure(rs, width, baseline, caption)
    if kind is FigureKind.ROOFLINE:
        return figures.roofline_figure(rs, width, caption)
    if kind is FigureKind.MEMORY:
        return figures.memory_figure(rs, width, caption)
    if kind is FigureKind.SWEEP:
        return figures.sweep_figure(rs, width, caption)
    raise PlotError(f"unknown figure kind {kind!r}")
