"""A figure with the table it plots and its caption, written to files; the print style
every figure is built under.

matplotlib's object API on an Agg canvas, never pyplot: nothing global changes in the
caller's process and no GUI backend is touched.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, ParamSpec

import matplotlib
import pandas as pd
from matplotlib.figure import Figure

from invbench.render.plots.layout import print_rc

P = ParamSpec("P")


# No creation dates in vector files: the same data gives byte-identical files, so
# figures kept under version control change only when their content does.
_FILE_METADATA: dict[str, dict[str, str | None]] = {
    "pdf": {"Creator": "invbench", "CreationDate": None},
    "svg": {"Creator": "invbench", "Date": None},
}


_SVG_ID = re.compile(r'id="([A-Za-z]+[0-9a-f]{8,})"')


def _sequential_svg_ids(svg: str) -> str:
    """Number the SVG's hashed ids (clip paths, markers) in order of appearance.

    matplotlib hashes a clip rectangle's coordinates into its id, and those can differ
    in the last bits between two layouts of the same figure; numbered ids make equal
    figures byte-identical.
    """
    ids = list(dict.fromkeys(_SVG_ID.findall(svg)))
    if not ids:
        return svg
    names = {old: f"{old[0]}{i}" for i, old in enumerate(ids)}
    pattern = re.compile(
        r'(?<=id=")('
        + "|".join(map(re.escape, ids))
        + r')(?=")|(?<=#)('
        + "|".join(map(re.escape, ids))
        + r')(?=[)"])'
    )
    return pattern.sub(lambda m: names[m.group(0)], svg)


@dataclass
class FigureResult:
    """A figure, the table it plots, and its caption."""

    kind: str
    stem: str  # file name without extension
    figure: Figure
    table: pd.DataFrame
    caption: str  # one line: device, dtype, mode, batch, commit
    details: list[str] = field(default_factory=list)  # more lines for the sidecar file

    def save(self, out_dir: Path, formats: Sequence[str]) -> list[Path]:
        """Write the figure in each format, plus STEM.txt (caption) and STEM.csv (data)."""
        out_dir.mkdir(parents=True, exist_ok=True)
        paths = []
        with matplotlib.rc_context(print_rc()):
            for fmt in formats:
                path = out_dir / f"{self.stem}.{fmt}"
                self.figure.savefig(path, format=fmt, metadata=_FILE_METADATA.get(fmt))
                if fmt == "svg":
                    path.write_text(_sequential_svg_ids(path.read_text()))
                paths.append(path)
        text = out_dir / f"{self.stem}.txt"
        text.write_text("\n".join([self.caption, *self.details]) + "\n")
        table = out_dir / f"{self.stem}.csv"
        self.table.to_csv(table, index=False)
        return [*paths, text, table]

    def save_png(self, target: BinaryIO, dpi: int = 150) -> None:
        """PNG bytes into an open binary file (for embedding)."""
        with matplotlib.rc_context(print_rc()):
            self.figure.savefig(target, format="png", dpi=dpi)


def styled(make: Callable[P, FigureResult]) -> Callable[P, FigureResult]:
    """Build the whole figure under the print rc settings (sizes are read at creation)."""

    @functools.wraps(make)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> FigureResult:
        with matplotlib.rc_context(print_rc()):
            return make(*args, **kwargs)

    return wrapper
