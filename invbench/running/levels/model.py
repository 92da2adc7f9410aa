"""The model level: whole ResNet and RedNet networks, images/s for inference and a training step.

How the networks are built, run and checked is in
invbench.running.levels.model_workload. Each case runs ResNet with ``conv3x3`` and
RedNet once per involution backend; a backend no network of ours uses (``dwconv``)
has no row. The check compares eval-mode logits of the first CHECKED_IMAGES images
with float64 before any training step; ``flops`` comes from the network's MAC count.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from invbench.backends.base import Backend
from invbench.core.spec import Case, DeviceKind, Dtype, Geometry, Level, Mode
from invbench.core.stats import Summary
from invbench.models.count import count_macs
from invbench.models.resnet import Network
from invbench.operator.reference import relative_error
from invbench.running.levels.base import TOTAL, Built, Check, LevelStrategy, identity, within
from invbench.running.levels.layer import autotune_convs, network_skip_reason
from invbench.running.levels.model_workload import (
    MODEL_TOLERANCE,
    eval_logits,
    make_inputs,
    make_model,
    model_closure,
    model_for,
    prepare_model,
    reference_logits,
)

CHECKED_IMAGES = 2  # images of the batch checked against float64


@dataclass
class ModelGroup:
    geom: Geometry
    dtype: Dtype
    mode: Mode
    seed: int
    device: torch.device
    images: torch.Tensor
    labels: torch.Tensor
    sources: dict[str, Network] = field(default_factory=dict)  # float32 CPU networks, by name
    expected: dict[str, torch.Tensor] = field(default_factory=dict)  # float64 logits, by name


class ModelLevel(LevelStrategy):
    level = Level.MODEL

    def __init__(self) -> None:
        self._macs: dict[tuple[str, int, int], int] = {}

    def start(self, device: torch.device) -> None:
        autotune_convs(device)

    def runs(self, backend: Backend, case: Case) -> bool:
        return model_for(backend, case.depth) is not None

    def base(
        self, case: Case, backend: Backend, dtype: Dtype, mode: Mode, device: DeviceKind
    ) -> dict[str, Any]:
        g = case.geometry
        # channels/height/width describe the input images; kernel fields do not apply
        return dict(
            identity(case, backend, dtype, mode, device, self.level),
            batch=g.batch,
            channels=g.channels,
            height=g.height,
            width=g.width,
            kernel_size=0,
            stride=0,
            dilation=0,
            groups=0,
            padding=0,
            out_height=0,
            out_width=0,
            model=model_for(backend, case.depth) or "",
        )

    def skip_reason(
        self, case: Case, backend: Backend, dtype: Dtype, mode: Mode, device: DeviceKind
    ) -> str | None:
        return network_skip_reason(backend, self.level, dtype, mode, device)

    def prepare(
        self,
        case: Case,
        dtype: Dtype,
        mode: Mode,
        backends: Sequence[Backend],
        device: torch.device,
        seed: int,
    ) -> ModelGroup:
        g = case.geometry
        images, labels = make_inputs(g, device, getattr(torch, dtype.value), seed)
        return ModelGroup(g, dtype, mode, seed, device, images, labels)

    def build(self, group: ModelGroup, backend: Backend, base: dict[str, Any]) -> Built:
        name, g = base["model"], group.geom
        if name not in group.sources:  # built when first needed: one failure fails one model
            group.sources[name] = make_model(name, group.seed)
            group.expected[name] = reference_logits(
                group.sources[name], group.images[:CHECKED_IMAGES]
            )
        source, expected = group.sources[name], group.expected[name]
        factor = 2 if group.mode is Mode.FWD else 6
        flops = factor * self._model_macs(name, source, g.height, g.width) * g.batch
        tdtype = getattr(torch, group.dtype.value)
        model = prepare_model(backend, source, group.device, tdtype, group.mode)
        dtype, checked = group.dtype, group.images[:CHECKED_IMAGES]

        def precheck() -> Check:
            err = relative_error(eval_logits(model, checked), expected)
            tol = MODEL_TOLERANCE[dtype]
            return within(
                err,
                tol,
                f"eval logits: max relative error {err:.3g} vs float64 exceeds "
                f"{tol:g} for {dtype.value}",
            )

        fn = model_closure(model, group.images, group.labels, group.mode)
        return Built({TOTAL: fn}, precheck=precheck, fields={"flops": flops})

    def row_fields(self, base: dict[str, Any], summary: Summary) -> dict[str, Any]:
        return {"images_per_s": base["batch"] / (summary.median / 1e3)}

    def describe(self, backend: Backend, base: dict[str, Any]) -> str:
        return f"{base['model']} with {backend.name}"

    def _model_macs(self, name: str, model: Network, height: int, width: int) -> int:
        key = (name, height, width)
        if key not in self._macs:
            self._macs[key] = count_macs(model, (height, width)).macs
        return self._macs[key]
