"""The model level: whole ResNet/RedNet networks, inference and a training step.

Each model case (a depth and an input size) runs our ResNet with the ``conv3x3``
backend standing for "3x3 convs by torch" and our RedNet once per involution
backend (the backend does every involution's aggregation; a backend with
``fuse`` replaces every involution layer by its fused inference form).

``fwd`` is inference: eval mode, no autograd, images/s = batch / median.
``fwd+bwd`` is one training step: train mode, forward, cross-entropy on random
labels, backward, SGD step (momentum 0.9).

Correctness: the eval-mode logits against the same weights in float64 (RedNet
with the float64 reference aggregation). Tolerances are loose (see
MODEL_TOLERANCE): rounding grows through a deep network, and the check is there to
catch a wrong backend, whose error is of order one.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from invbench.backends.base import Backend, Closure, InvolutionBackend
from invbench.core.spec import Dtype, Geometry, Mode
from invbench.models.resnet import Network, build_model
from invbench.operator.ops import Involution
from invbench.operator.reference import involution_reference
from invbench.running.levels.layer_workload import ConvLayer, LayerFuser

MODEL_TOLERANCE = {
    Dtype.FLOAT64: 1e-8,
    Dtype.FLOAT32: 1e-3,
    Dtype.FLOAT16: 2e-2,
    Dtype.BFLOAT16: 5e-2,
}
NUM_CLASSES = 1000
BASELINE = "conv3x3"


def model_for(backend: Backend, depth: int) -> str | None:
    """The model a backend runs at this depth, or None when it runs none."""
    if isinstance(backend, ConvLayer):
        return f"resnet-{depth}" if backend.name == BASELINE else None
    if isinstance(backend, (InvolutionBackend, LayerFuser)):
        return f"rednet-{depth}"
    return None


def make_model(name: str, seed: int) -> Network:
    """A seeded random float32 model on the CPU (aggregation backend: unfold)."""
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        return build_model(name, num_classes=NUM_CLASSES)
    finally:
        torch.random.set_rng_state(state)


class _Fused(nn.Module):
    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


def _replace_involutions(model: nn.Module, make: Callable[[Involution], nn.Module]) -> None:
    for name, child in list(model.named_children()):
        if isinstance(child, Involution):
            setattr(model, name, make(child))
        else:
            _replace_involutions(child, make)


def prepare_model(
    backend: Backend, source: Network, device: torch.device, dtype: torch.dtype, mode: Mode
) -> nn.Module:
    model = copy.deepcopy(source).to(device=device, dtype=dtype)
    if isinstance(backend, LayerFuser) and not isinstance(backend, InvolutionBackend):
        if mode is not Mode.FWD:
            raise ValueError(f"{backend.name} is inference only")
        model.eval()
        _replace_involutions(model, lambda layer: _Fused(backend.fuse(layer)))
    elif isinstance(backend, InvolutionBackend):
        for m in model.modules():
            if isinstance(m, Involution):
                m.backend = backend.name
    return model


def model_closure(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, mode: Mode
) -> Closure:
    if mode is Mode.FWD:
        model.eval()

        def infer() -> tuple[torch.Tensor, ...]:
            with torch.no_grad():
                return (model(images),)

        return infer
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

    def train_step() -> tuple[torch.Tensor, ...]:
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(images), labels)
        loss.backward()
        opt.step()
        return (loss.detach(),)

    return train_step


def eval_logits(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out: torch.Tensor = model(images)
            return out
    finally:
        model.train(was_training)


def reference_logits(source: Network, images: torch.Tensor) -> torch.Tensor:
    """Eval-mode logits in float64 on the CPU, involutions with the reference aggregation."""
    model = copy.deepcopy(source).to(device="cpu", dtype=torch.float64)

    def reference_forward(layer: Involution) -> Callable[[torch.Tensor], torch.Tensor]:
        def forward(x: torch.Tensor) -> torch.Tensor:
            b, c, h, w = x.shape
            geom = Geometry(
                batch=b,
                channels=c,
                height=h,
                width=w,
                kernel_size=layer.kernel_size,
                stride=layer.stride,
                groups=layer.groups,
            )
            return involution_reference(x, layer.generate(x), geom)

        return forward

    for m in model.modules():
        if isinstance(m, Involution):
            m.forward = reference_forward(m)  # type: ignore[method-assign,assignment]
    return eval_logits(model, images.detach().to(device="cpu", dtype=torch.float64))


def make_inputs(
    geom: Geometry, device: torch.device, dtype: torch.dtype, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator(device="cpu").manual_seed(seed)
    images = torch.randn(geom.batch, 3, geom.height, geom.width, generator=gen)
    labels = torch.randint(0, NUM_CLASSES, (geom.batch,), generator=gen)
    return images.to(device=device, dtype=dtype), labels.to(device)
