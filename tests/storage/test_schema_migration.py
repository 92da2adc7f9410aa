"""Result directories of an older schema load with the newer columns; newer ones refuse."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from invbench.storage.results import (
    META_FILE,
    RESULT_SCHEMA_VERSION,
    ResultsError,
    ResultWriter,
    load_results,
    row_from_record,
)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def test_a_version_1_directory_loads_with_the_version_2_columns(tmp_path: Path) -> None:
    old = tmp_path / "old"
    shutil.copytree(FIXTURES / "smoke-a", old)
    assert json.loads((old / META_FILE).read_text())["schema_version"] == 1
    rs = load_results(old)
    assert rs.meta["migrated_from"] == 1
    for column in ("tf32", "cudnn_benchmark", "host_ms", "launch_reruns", "clock_dropped"):
        assert column in rs.rows.columns
    assert rs.rows["tf32"].isna().all()  # unknown: torch's defaults allowed TF32 in cuDNN
    assert rs.rows["launch_reruns"].isna().all() and (rs.rows["clock_dropped"] == 0).all()
    rows = [row_from_record(r) for r in rs.rows.to_dict("records")]
    assert rows and rows[0].tf32 is None and rows[0].host_ms is None


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    new = tmp_path / "new"
    shutil.copytree(FIXTURES / "smoke-a", new)
    meta = json.loads((new / META_FILE).read_text())
    meta["schema_version"] = RESULT_SCHEMA_VERSION + 1
    (new / META_FILE).write_text(json.dumps(meta))
    with pytest.raises(ResultsError, match=f"schema {RESULT_SCHEMA_VERSION + 1}"):
        load_results(new)


def test_an_old_run_is_not_resumed_by_a_newer_schema(tmp_path: Path) -> None:
    old = tmp_path / "old"
    shutil.copytree(FIXTURES / "smoke-a", old)
    with pytest.raises(ResultsError, match="written with result schema 1"):
        ResultWriter.resume(old)


def test_older_rows_load_without_the_host_and_repeat_columns(tmp_path: Path) -> None:
    old = tmp_path / "old"
    shutil.copytree(FIXTURES / "smoke-a", old)
    rs = load_results(old)
    for column in ("threads", "load_avg", "steal_pct", "runs", "run_spread"):
        assert rs.rows[column].isna().all(), column


def test_a_deferred_writer_writes_once_at_the_end(tmp_path: Path) -> None:
    from tests.compare_helpers import row

    writer = ResultWriter(tmp_path / "d")
    with writer.deferred():
        writer.add(row("a"), [1.0, 2.0])
        writer.add(row("b"), [3.0])
        assert not (tmp_path / "d" / "results.parquet").exists()
    rs = load_results(tmp_path / "d")
    assert list(rs.rows["backend"]) == ["a", "b"]
    assert rs.samples.groupby("backend")["ms"].apply(list).to_dict() == {
        "a": [1.0, 2.0],
        "b": [3.0],
    }
    resumed = ResultWriter.resume(tmp_path / "d")  # rows and samples carried over
    resumed.add(row("c"), [4.0])
    assert load_results(tmp_path / "d").samples["ms"].tolist() == [1.0, 2.0, 3.0, 4.0]
