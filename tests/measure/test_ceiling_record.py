"""The ceilings record: what measure_ceilings writes is what the readers read."""

from __future__ import annotations

import json

import pytest
import torch

from invbench.measure.ceiling_record import ceilings_for, copy_gbps, measured_ceilings
from invbench.measure.ceilings import measure_ceilings


def test_round_trip_through_meta_json() -> None:
    record = json.loads(json.dumps(measure_ceilings(torch.device("cpu"))))
    found = measured_ceilings({"ceilings": record}, "cpu")
    assert found is not None and found.bandwidth is not None
    assert found.bandwidth.value == pytest.approx(record["copy"]["gbps"])
    assert found.bandwidth.value == copy_gbps(record)
    fp32 = found.compute_for("float32")
    assert fp32 is not None and fp32.source == "measured"
    assert fp32.value == pytest.approx(record["matmul"][0]["tflops"] * 1e12)


def test_failed_parts_are_left_out_not_guessed() -> None:
    record = {
        "device": "cuda",
        "copy": None,
        "copy_error": "OutOfMemoryError: ...",
        "matmul": [
            {"tflops": 610.0, "n": 8192, "dtype": "bfloat16"},
            {"dtype": "torch.float32", "error": "RuntimeError: out of memory"},
        ],
    }
    found = measured_ceilings({"ceilings": record}, "cuda")
    assert found is not None and found.bandwidth is None
    assert found.compute_for("float32") is None
    assert found.compute_for("bfloat16") is not None
    assert copy_gbps(record) is None
    # a CUDA run without a usable record falls back to a known GPU's datasheet, labelled so
    meta = {"ceilings": {"copy": None, "matmul": []}, "cuda_devices": [{"name": "NVIDIA H200"}]}
    sheet = ceilings_for(meta, "cuda")
    assert sheet is not None and sheet.bandwidth is not None
    assert sheet.bandwidth.source == "datasheet"
