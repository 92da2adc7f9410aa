"""Closed vocabularies and the pure-data records the harness passes around.

Nothing here imports torch: suites and results can be read and validated on a
machine without it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Kind(StrEnum):
    """What a backend computes."""

    INVOLUTION = "involution"  # the operator itself; checked against the reference
    BASELINE = "baseline"  # a different op of the same layer, timed for comparison


class Level(StrEnum):
    """What a suite times."""

    OP = "op"  # the aggregation alone, given its weights
    LAYER = "layer"  # the whole layer: kernel generation + aggregation (or the conv it replaces)
    MODEL = "model"  # whole networks: images/s for inference and for a training step


# Blocks per stage of the bottleneck networks (ResNet and RedNet share them).
MODEL_DEPTHS: dict[int, tuple[int, int, int, int]] = {
    26: (1, 2, 4, 1),
    38: (2, 3, 5, 2),
    50: (3, 4, 6, 3),
    101: (3, 4, 23, 3),
    152: (3, 8, 36, 3),
}


class Mode(StrEnum):
    FWD = "fwd"
    FWD_BWD = "fwd+bwd"


class Status(StrEnum):
    OK = "ok"
    SKIPPED = "skipped"  # the backend cannot run here (reason says why)
    INCORRECT = "incorrect"  # failed the check against the float64 reference
    ERROR = "error"  # raised while preparing, checking or timing
    OOM = "oom"  # ran out of device memory
    CRASHED = "crashed"  # the worker process died (signal, CUDA error, abort)
    TIMEOUT = "timeout"  # the worker process did not finish within the time limit


class DeviceKind(StrEnum):
    CPU = "cpu"
    CUDA = "cuda"


class Dtype(StrEnum):
    FLOAT32 = "float32"
    FLOAT16 = "float16"
    BFLOAT16 = "bfloat16"
    FLOAT64 = "float64"

    @property
    def itemsize(self) -> int:
        return {"float32": 4, "float16": 2, "bfloat16": 2, "float64": 8}[self.value]


@dataclass(frozen=True)
class Geometry:
    """Shape arithmetic of one involution (or the layer it sits in)."""

    batch: int
    channels: int
    height: int
    width: int
    kernel_size: int
    stride: int = 1
    dilation: int = 1
    groups: int = 1
    padding: int | None = None  # None: dilation * (kernel_size - 1) // 2

    @property
    def pad(self) -> int:
        if self.padding is None:
            return self.dilation * (self.kernel_size - 1) // 2
        return self.padding

    def _out(self, size: int) -> int:
        span = self.dilation * (self.kernel_size - 1) + 1
        return (size + 2 * self.pad - span) // self.stride + 1

    @property
    def out_height(self) -> int:
        return self._out(self.height)

    @property
    def out_width(self) -> int:
        return self._out(self.width)

    @property
    def group_channels(self) -> int:
        return self.channels // self.groups

    @property
    def x_shape(self) -> tuple[int, int, int, int]:
        return (self.batch, self.channels, self.height, self.width)

    @property
    def weight_shape(self) -> tuple[int, int, int, int, int, int]:
        k = self.kernel_size
        return (self.batch, self.groups, k, k, self.out_height, self.out_width)

    @property
    def out_shape(self) -> tuple[int, int, int, int]:
        return (self.batch, self.channels, self.out_height, self.out_width)

    def row_fields(self) -> dict[str, int]:
        """The shape columns of a result row (batch, channels, ... out_width)."""
        return {
            "batch": self.batch,
            "channels": self.channels,
            "height": self.height,
            "width": self.width,
            "kernel_size": self.kernel_size,
            "stride": self.stride,
            "dilation": self.dilation,
            "groups": self.groups,
            "padding": self.pad,
            "out_height": self.out_height,
            "out_width": self.out_width,
        }

    def numel(self, which: str) -> int:
        shape = {"x": self.x_shape, "weight": self.weight_shape, "out": self.out_shape}[which]
        n = 1
        for s in shape:
            n *= s
        return n


@dataclass(frozen=True)
class Case:
    """One shape of a suite."""

    suite: str
    name: str
    geometry: Geometry
    depth: int = 0  # model level: the ResNet/RedNet depth (0 at the op and layer levels)
