"""Load and validate suites/*.toml into frozen dataclasses.

A suite file::

    schema_version = 1
    description = "..."

    [run]                      # defaults of `invbench run`, overridable on the command line
    batch = 64
    dtypes = ["float32", "bfloat16"]
    modes = ["fwd", "fwd+bwd"]
    backends = []              # empty: every registered backend

    [run.cpu]                  # replaces [run] keys when the device is the CPU
    batch = 2

    [case_defaults]            # shape fields shared by every case
    kernel_size = 7

    [[cases]]                  # explicit cases...
    name = "layer1"
    channels = 64
    height = 56

    [axes]                     # ...each expanded over the Cartesian product of these
    kernel_size = [3, 5, 7]

A top-level ``level`` picks what is timed: "op" (default; the aggregation alone),
"layer" (the whole involution layer against the conv it replaces; same case keys)
or "model" (whole networks; each case is ``name``, ``depth`` and optionally
``height``/``width``/``batch``: the input images). Three more [run] keys help keep
CPU runs short: ``batches`` (run every case at each of these batches), ``only``
(case names to run) and ``image_size`` (model level: input height and width).
``threads`` fixes torch's intra-op thread count (default: torch's own choice).

Every unknown key or bad value is a SuiteError naming the file, the case and the key.
"""

from __future__ import annotations

import itertools
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from invbench.core.spec import MODEL_DEPTHS, Case, DeviceKind, Dtype, Geometry, Level, Mode

SUITE_SCHEMA_VERSION = 1
SUITES_DIR = Path(__file__).resolve().parents[2] / "suites"

_SHAPE_KEYS = (
    "batch",
    "channels",
    "height",
    "width",
    "kernel_size",
    "stride",
    "dilation",
    "groups",
    "group_channels",
    "padding",
)
_RUN_KEYS = (
    "batch",
    "dtypes",
    "modes",
    "backends",
    "samples",
    "min_samples",
    "min_time_s",
    "max_time_s",
    "target_rel_ci",
    "warmup_ms",
    "seed",
    "batches",
    "only",
    "image_size",
    "threads",
)
_MODEL_KEYS = ("batch", "depth", "height", "width")


class SuiteError(ValueError):
    pass


@dataclass(frozen=True)
class RunSettings:
    """How a suite is run by default; each field can be overridden on the command line."""

    batch: int = 1
    dtypes: tuple[Dtype, ...] = (Dtype.FLOAT32,)
    modes: tuple[Mode, ...] = (Mode.FWD,)
    backends: tuple[str, ...] = ()  # empty: all registered backends
    samples: int | None = None  # fixed sample count; None: adaptive
    min_samples: int = 10
    min_time_s: float = 0.05
    max_time_s: float = 2.0
    target_rel_ci: float = 0.01
    warmup_ms: float = 25.0
    seed: int = 0
    batches: tuple[int, ...] = ()  # non-empty: every case (batch not fixed) at each batch
    only: tuple[str, ...] = ()  # non-empty: run only these cases
    image_size: int | None = None  # model level: input height and width of every case
    threads: int | None = None  # torch's intra-op threads; None: torch's default


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    path: Path
    cases: tuple[Case, ...]
    run: RunSettings
    run_cpu: RunSettings
    batch_fixed: frozenset[str] = field(default_factory=frozenset)  # cases whose batch is set
    level: Level = Level.OP

    def settings(self, device: DeviceKind) -> RunSettings:
        return self.run_cpu if device is DeviceKind.CPU else self.run

    def with_batch(self, batch: int) -> Suite:
        """The suite with every case whose batch comes from the run defaults set to batch."""
        from dataclasses import replace

        cases = tuple(
            c
            if c.name in self.batch_fixed
            else replace(c, geometry=replace(c.geometry, batch=batch))
            for c in self.cases
        )
        return replace(self, cases=cases)

    def for_run(self, settings: RunSettings, batch: int | None = None) -> Suite:
        """The cases one run times: settings.only, image_size and batches applied.

        An explicit batch (the command line's) wins over settings.batches and batch.
        """
        from dataclasses import replace

        cases = [c for c in self.cases if not settings.only or c.name in settings.only]
        if settings.image_size is not None and self.level is Level.MODEL:
            size = settings.image_size
            cases = [
                replace(c, geometry=replace(c.geometry, height=size, width=size)) for c in cases
            ]
        suite = replace(self, cases=tuple(cases))
        if batch is not None or not settings.batches:
            return suite.with_batch(batch or settings.batch)
        expanded: list[Case] = []
        for c in cases:
            if c.name in self.batch_fixed:
                expanded.append(c)
                continue
            for b in settings.batches:
                geom = replace(c.geometry, batch=b)
                expanded.append(replace(c, name=f"{c.name}/b{b}", geometry=geom))
        fixed = self.batch_fixed | {c.name for c in expanded}
        return replace(suite, cases=tuple(expanded), batch_fixed=frozenset(fixed))


def _err(path: Path, where: str, msg: str) -> SuiteError:
    return SuiteError(f"{path.name}: {where}: {msg}")


def _int(path: Path, where: str, key: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise _err(path, where, f"{key} must be an int >= {minimum}, got {value!r}")
    return value


def _num(path: Path, where: str, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise _err(path, where, f"{key} must be a non-negative number, got {value!r}")
    return float(value)


def _enum_list(path: Path, where: str, key: str, value: Any, enum: Any) -> tuple[Any, ...]:
    if not isinstance(value, list) or not value:
        raise _err(path, where, f"{key} must be a non-empty list, got {value!r}")
    out = []
    for v in value:
        try:
            out.append(enum(v))
        except ValueError:
            allowed = ", ".join(e.value for e in enum)
            raise _err(path, where, f"{key}: unknown value {v!r} (allowed: {allowed})") from None
    return tuple(out)


def _run_settings(path: Path, where: str, table: Any, base: RunSettings) -> RunSettings:
    if not isinstance(table, Mapping):
        raise _err(path, where, "must be a table")
    values: dict[str, Any] = {f.name: getattr(base, f.name) for f in fields(base)}
    for key, value in table.items():
        if key == "cpu" and where == "[run]":
            continue
        if key not in _RUN_KEYS:
            raise _err(path, where, f"unknown key {key!r} (allowed: {', '.join(_RUN_KEYS)})")
        if key == "dtypes":
            values[key] = _enum_list(path, where, key, value, Dtype)
        elif key == "modes":
            values[key] = _enum_list(path, where, key, value, Mode)
        elif key == "backends":
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise _err(path, where, f"backends must be a list of names, got {value!r}")
            values[key] = tuple(value)
        elif key in ("batches", "only"):
            kind = int if key == "batches" else str
            ok = (
                isinstance(value, list)
                and value
                and all(isinstance(v, kind) and not isinstance(v, bool) for v in value)
            )
            if not ok or (key == "batches" and min(value) < 1):
                what = "positive ints" if key == "batches" else "case names"
                raise _err(path, where, f"{key} must be a non-empty list of {what}, got {value!r}")
            values[key] = tuple(value)
        elif key in ("batch", "min_samples", "samples", "image_size", "threads"):
            values[key] = _int(path, where, key, value)
        elif key == "seed":
            values[key] = _int(path, where, key, value, minimum=0)
        else:
            values[key] = _num(path, where, key, value)
    return RunSettings(**values)


def _geometry(path: Path, where: str, shape: Mapping[str, Any], default_batch: int) -> Geometry:
    for key in shape:
        if key not in _SHAPE_KEYS:
            raise _err(
                path, where, f"unknown key {key!r} (allowed: name, {', '.join(_SHAPE_KEYS)})"
            )
    ints = {}
    for key, value in shape.items():
        ints[key] = _int(path, where, key, value, minimum=0 if key == "padding" else 1)
    for key in ("channels", "height", "kernel_size"):
        if key not in ints:
            raise _err(path, where, f"missing required key {key!r}")
    channels = ints["channels"]
    if "groups" in ints and "group_channels" in ints:
        raise _err(path, where, "give groups or group_channels, not both")
    if "group_channels" in ints:
        if channels % ints["group_channels"]:
            raise _err(
                path,
                where,
                f"group_channels={ints['group_channels']} does not divide channels={channels}",
            )
        groups = channels // ints["group_channels"]
    else:
        groups = ints.get("groups", 1)
        if channels % groups:
            raise _err(path, where, f"groups={groups} does not divide channels={channels}")
    geom = Geometry(
        batch=ints.get("batch", default_batch),
        channels=channels,
        height=ints["height"],
        width=ints.get("width", ints["height"]),
        kernel_size=ints["kernel_size"],
        stride=ints.get("stride", 1),
        dilation=ints.get("dilation", 1),
        groups=groups,
        padding=ints.get("padding"),
    )
    if geom.out_height < 1 or geom.out_width < 1:
        raise _err(path, where, "kernel (with dilation) is larger than the padded input")
    return geom


def _model_geometry(
    path: Path, where: str, shape: Mapping[str, Any], default_batch: int
) -> tuple[Geometry, int]:
    """A model case: the input images (B, 3, H, W) and the network depth."""
    for key in shape:
        if key not in _MODEL_KEYS:
            raise _err(
                path, where, f"unknown key {key!r} (allowed: name, {', '.join(_MODEL_KEYS)})"
            )
    ints = {key: _int(path, where, key, value) for key, value in shape.items()}
    depth = ints.get("depth")
    if depth is None:
        raise _err(path, where, "missing required key 'depth'")
    if depth not in MODEL_DEPTHS:
        raise _err(
            path, where, f"depth must be one of {', '.join(map(str, MODEL_DEPTHS))}, got {depth}"
        )
    height = ints.get("height", 224)
    geom = Geometry(
        batch=ints.get("batch", default_batch),
        channels=3,
        height=height,
        width=ints.get("width", height),
        kernel_size=1,
    )
    return geom, depth


def _fmt_axis(key: str, value: Any) -> str:
    short = {
        "kernel_size": "k",
        "batch": "b",
        "stride": "s",
        "dilation": "d",
        "groups": "g",
        "channels": "c",
        "height": "h",
        "width": "w",
        "padding": "p",
        "group_channels": "gc",
        "depth": "depth",
    }
    return f"{short[key]}{value}"


def load_suite(path: Path) -> Suite:
    """Parse and validate one suite file."""
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise SuiteError(f"suite file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise SuiteError(f"{path.name}: malformed TOML: {exc}") from None
    allowed = {"schema_version", "description", "level", "run", "case_defaults", "cases", "axes"}
    for key in data:
        if key not in allowed:
            raise _err(
                path, "top level", f"unknown key {key!r} (allowed: {', '.join(sorted(allowed))})"
            )
    version = data.get("schema_version")
    if version != SUITE_SCHEMA_VERSION:
        raise _err(
            path,
            "top level",
            f"schema_version must be {SUITE_SCHEMA_VERSION}, got "
            f"{version!r}: update the file to this invbench's suite format",
        )
    try:
        level = Level(data.get("level", "op"))
    except ValueError:
        allowed_levels = ", ".join(v.value for v in Level)
        raise _err(
            path, "top level", f"level must be one of {allowed_levels}, got {data['level']!r}"
        ) from None
    shape_keys = _MODEL_KEYS if level is Level.MODEL else _SHAPE_KEYS
    run_table = data.get("run", {})
    run = _run_settings(path, "[run]", run_table, RunSettings())
    run_cpu = _run_settings(path, "[run.cpu]", run_table.get("cpu", {}), run)
    defaults = data.get("case_defaults", {})
    if not isinstance(defaults, Mapping):
        raise _err(path, "[case_defaults]", "must be a table")
    axes = data.get("axes", {})
    if not isinstance(axes, Mapping):
        raise _err(path, "[axes]", "must be a table")
    for key, values in axes.items():
        if key not in shape_keys:
            raise _err(path, "[axes]", f"unknown key {key!r} (allowed: {', '.join(shape_keys)})")
        if not isinstance(values, list) or not values:
            raise _err(path, "[axes]", f"{key} must be a non-empty list")
    raw_cases = data.get("cases", [])
    if not isinstance(raw_cases, list) or not raw_cases:
        raise _err(path, "top level", "needs at least one [[cases]] entry")
    cases: list[Case] = []
    batch_fixed: set[str] = set()
    names: set[str] = set()
    name = path.stem
    for i, raw in enumerate(raw_cases):
        if not isinstance(raw, Mapping):
            raise _err(path, f"case #{i + 1}", "must be a table")
        base_name = raw.get("name")
        where = f"case {base_name!r}" if base_name else f"case #{i + 1}"
        if not isinstance(base_name, str) or not base_name:
            raise _err(path, where, "missing required key 'name'")
        shape = {**defaults, **{k: v for k, v in raw.items() if k != "name"}}
        combos = list(itertools.product(*axes.values())) if axes else [()]
        for combo in combos:
            full = {**shape, **dict(zip(axes.keys(), combo, strict=True))}
            case_name = base_name + "".join(
                "/" + _fmt_axis(k, v) for k, v in zip(axes.keys(), combo, strict=True)
            )
            if case_name in names:
                raise _err(path, where, f"duplicate case name {case_name!r}")
            names.add(case_name)
            depth = 0
            if level is Level.MODEL:
                geom, depth = _model_geometry(path, f"case {case_name!r}", full, run.batch)
            else:
                geom = _geometry(path, f"case {case_name!r}", full, run.batch)
            if "batch" in full:
                batch_fixed.add(case_name)
            cases.append(Case(suite=name, name=case_name, geometry=geom, depth=depth))
    description = data.get("description", "")
    if not isinstance(description, str):
        raise _err(path, "top level", "description must be a string")
    for where, settings in (("[run]", run), ("[run.cpu]", run_cpu)):
        unknown = [c for c in settings.only if c not in names]
        if unknown:
            raise _err(path, where, f"only: no case named {', '.join(map(repr, unknown))}")
    return Suite(
        name=name,
        description=description,
        path=path,
        cases=tuple(cases),
        run=run,
        run_cpu=run_cpu,
        batch_fixed=frozenset(batch_fixed),
        level=level,
    )


def available_suites(directory: Path = SUITES_DIR) -> dict[str, Path]:
    return {p.stem: p for p in sorted(directory.glob("*.toml"))}


def suite_dirs() -> list[Path]:
    """Where suites are looked up: ./suites, then the suites shipped beside the package."""
    dirs = [Path.cwd() / "suites", SUITES_DIR]
    return [
        d
        for i, d in enumerate(dirs)
        if d.is_dir() and d.resolve() not in [e.resolve() for e in dirs[:i]]
    ]


def find_suite(name_or_path: str) -> Suite:
    """A suite by name (suites/<name>.toml) or by path to a .toml file."""
    path = Path(name_or_path)
    if path.suffix == ".toml":
        return load_suite(path)
    suites: dict[str, Path] = {}
    for directory in reversed(suite_dirs()):
        suites.update(available_suites(directory))
    if name_or_path not in suites:
        known = ", ".join(suites) or "none"
        raise SuiteError(f"unknown suite {name_or_path!r} (known: {known})")
    return load_suite(suites[name_or_path])
