"""invbench export --format pytest-benchmark, read back with pytest-benchmark's own code."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd
import pytest

from invbench.cli.app import main
from invbench.storage.export import pytest_benchmark_stats
from tests.compare_helpers import row, write_dir

pytest_benchmark = pytest.importorskip("pytest_benchmark")
from pytest_benchmark.stats import Stats  # noqa: E402
from pytest_benchmark.storage.file import FileStorage  # noqa: E402


@pytest.mark.parametrize("n", [1, 2, 5, 6, 7, 8, 9, 40, 41])
def test_stats_match_pytest_benchmark(n: int) -> None:
    data = [((i * 7919) % 23 + 1) / 1e4 for i in range(n)]
    ours = pytest_benchmark_stats(data)
    theirs = Stats()
    for x in data:
        theirs.update(x)
    for field in Stats.fields:
        assert ours[field] == pytest.approx(getattr(theirs, field)), field
    assert ours["data"] == data and ours["iterations"] == 1


def test_export_loads_with_pytest_benchmark_storage(tmp_path: Path) -> None:
    samples_ms = [1.0, 1.2, 1.1, 0.9, 3.0, 1.05]
    results = write_dir(
        tmp_path / "run",
        [
            (row("a", median_ms=1.075, timer="perf_counter"), samples_ms),
            (row("b", median_ms=2.0), [2.0] * 6),
            (row("c", "error", reason="boom"), []),
        ],
        meta={"git": {"commit": "ab" * 20, "dirty": True}, "host": "box"},
    )
    out = tmp_path / "storage" / "0001_invbench.json"
    out.parent.mkdir()
    assert main(["export", str(results), "--format", "pytest-benchmark", "--output", str(out)]) == 0

    storage = FileStorage(out.parent, logger=logging.getLogger("test"))
    loaded = list(storage.load())
    assert len(loaded) == 1
    _, document = loaded[0]
    assert document["commit_info"]["id"] == "ab" * 20 and document["commit_info"]["dirty"]
    assert document["machine_info"]["node"] == "box"
    benches = {b["param"].split("-")[0]: b for b in storage.load_benchmarks()}
    assert set(benches) == {"a", "b"}  # the error row is left out
    a = benches["a"]
    assert a["group"] == "synthetic/c1/float32/fwd"
    assert a["name"] == "c1[a-cpu-float32-fwd]"
    assert a["rounds"] == 6 and a["iterations"] == 1
    assert a["median"] == pytest.approx(pd.Series(samples_ms).median() / 1e3)
    assert a["min"] == pytest.approx(0.9e-3) and a["max"] == pytest.approx(3.0e-3)
    assert a["ops"] == pytest.approx(6 / (sum(samples_ms) / 1e3))
    assert benches["b"]["stddev"] == 0


def test_export_to_stdout_is_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    results = write_dir(tmp_path / "run", [(row("a"), [1.0, 2.0, 3.0])])
    assert main(["export", str(results)]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["benchmarks"][0]["stats"]["median"] == pytest.approx(2e-3)
    assert main(["export", str(results), "--format", "csv"]) == 2


def _run_on_a_terminal(args: list[str]) -> tuple[int, str, str]:
    """Run `invbench ARGS` with its standard output on a pseudo-terminal."""
    import os
    import pty
    import subprocess
    import sys
    import threading

    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "invbench", *args], stdout=slave, stderr=subprocess.PIPE
    )
    os.close(slave)
    chunks: list[bytes] = []

    def read() -> None:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # the terminal closed
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    _, stderr = proc.communicate(timeout=300)
    reader.join(timeout=10)
    os.close(master)
    return proc.returncode, b"".join(chunks).decode(), stderr.decode()


def test_export_to_a_terminal_writes_a_file_and_says_where(tmp_path: Path) -> None:
    results = write_dir(tmp_path / "run", [(row("a"), [1.0, 2.0, 3.0]), (row("b"), [2.0] * 3)])
    rc, terminal, stderr = _run_on_a_terminal(["export", str(results)])
    assert rc == 0, stderr
    assert "benchmarks" not in terminal and "{" not in terminal  # no JSON on the screen
    target = results / "pytest-benchmark.json"
    assert len(json.loads(target.read_text())["benchmarks"]) == 2
    assert f"2 benchmarks written to {target}" in stderr and "--output" in stderr


def test_export_output_dash_prints_and_a_file_is_said(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = write_dir(tmp_path / "run", [(row("a"), [1.0, 2.0, 3.0])])
    assert main(["export", str(results), "--output", "-"]) == 0
    assert json.loads(capsys.readouterr().out)["benchmarks"][0]["name"]
    out = tmp_path / "b.json"
    assert main(["export", str(results), "--output", str(out)]) == 0
    assert f"1 benchmark written to {out}" in capsys.readouterr().err
    assert json.loads(out.read_text())["benchmarks"]
