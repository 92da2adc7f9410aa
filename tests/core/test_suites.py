from __future__ import annotations

from pathlib import Path

import pytest

from invbench.core.spec import DeviceKind, Dtype, Mode
from invbench.core.suites import SuiteError, find_suite, load_suite

RESNET = {
    "stem": (32, 112, 112, 1, 3, 2),
    "layer1": (64, 56, 56, 1, 7, 4),
    "layer2-first": (128, 56, 28, 2, 7, 8),
    "layer2": (128, 28, 28, 1, 7, 8),
    "layer3-first": (256, 28, 14, 2, 7, 16),
    "layer3": (256, 14, 14, 1, 7, 16),
    "layer4-first": (512, 14, 7, 2, 7, 32),
    "layer4": (512, 7, 7, 1, 7, 32),
}


def test_resnet_shapes_match_rednet50() -> None:
    suite = find_suite("resnet-shapes")
    assert [c.name for c in suite.cases] == list(RESNET)
    for case in suite.cases:
        g = case.geometry
        c, h, ho, s, k, groups = RESNET[case.name]
        assert (g.channels, g.height, g.width, g.stride, g.kernel_size, g.groups) == (
            c,
            h,
            h,
            s,
            k,
            groups,
        )
        assert g.out_height == g.out_width == ho
        assert g.batch == 64
    cpu = suite.settings(DeviceKind.CPU)
    assert cpu.batch == 2 and cpu.dtypes == (Dtype.FLOAT32,) and cpu.modes == (Mode.FWD,)
    assert suite.settings(DeviceKind.CUDA).modes == (Mode.FWD, Mode.FWD_BWD)
    assert {c.geometry.batch for c in suite.with_batch(8).cases} == {8}


def test_sweeps_expand_axes() -> None:
    ks = find_suite("kernel-sweep")
    assert [c.geometry.kernel_size for c in ks.cases] == [3, 5, 7, 9, 11]
    bs = find_suite("batch-sweep")
    assert [c.geometry.batch for c in bs.cases] == [1, 2, 4, 8, 16, 32, 64, 128, 256]
    # a batch set by an axis is not overridden by --batch
    assert [c.geometry.batch for c in bs.with_batch(3).cases][:3] == [1, 2, 4]
    assert len(find_suite("smoke").cases) >= 2


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "bad.toml"
    p.write_text(text)
    return p


GOOD_CASE = '[[cases]]\nname = "a"\nchannels = 8\nheight = 8\nkernel_size = 3\n'


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("schema_version = 2\n" + GOOD_CASE, r"bad.toml: top level: schema_version must be 1"),
        ("schema_version = 1\nfoo = 1\n" + GOOD_CASE, r"top level: unknown key 'foo'"),
        ("schema_version = 1\n" + GOOD_CASE + "colour = 3\n", r"case 'a': unknown key 'colour'"),
        (
            "schema_version = 1\n" + GOOD_CASE.replace("8\nheight", "-8\nheight"),
            r"case 'a': channels must be an int >= 1, got -8",
        ),
        (
            "schema_version = 1\n" + GOOD_CASE + "groups = 3\n",
            r"case 'a': groups=3 does not divide",
        ),
        (
            'schema_version = 1\n[run]\ndtypes = ["float8"]\n' + GOOD_CASE,
            r"\[run\]: dtypes: unknown value 'float8'",
        ),
        (
            "schema_version = 1\n[run]\nbatchsize = 3\n" + GOOD_CASE,
            r"\[run\]: unknown key 'batchsize'",
        ),
        ("schema_version = 1\n", r"needs at least one \[\[cases\]\]"),
        ("schema_version = 1\n[[cases]]\nchannels = 8\n", r"missing required key 'name'"),
        ("schema_version = 1\n" + GOOD_CASE + GOOD_CASE, r"duplicate case name 'a'"),
        ("schema_version = 1\n[[cases\n", r"malformed TOML"),
        (
            "schema_version = 1\n"
            + GOOD_CASE.replace("height = 8", "height = 1")
            + "padding = 0\n",
            r"larger than the padded input",
        ),
    ],
)
def test_bad_suites_name_file_case_and_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(SuiteError, match=message):
        load_suite(write(tmp_path, text))


def test_unknown_suite_lists_known() -> None:
    with pytest.raises(SuiteError, match=r"unknown suite 'nope' .*resnet-shapes"):
        find_suite("nope")


def test_threads_is_a_run_key_and_the_smoke_suite_uses_one() -> None:
    from invbench.core.spec import DeviceKind
    from invbench.core.suites import find_suite

    smoke = find_suite("smoke")
    assert smoke.settings(DeviceKind.CPU).threads == 1
    assert find_suite("resnet-shapes").settings(DeviceKind.CPU).threads is None
