"""Our ResNet/RedNet definitions against the published parameter and MAC counts."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from invbench.models import build_model, count_macs, count_params
from invbench.operator.ops import Involution

# Published (params in millions, GMACs at 224x224): the RedNet paper/official code base,
# and ResNet-50 as usually quoted.
PUBLISHED = {
    "rednet-26": (9.23, 1.73),
    "rednet-38": (12.39, 2.22),
    "rednet-50": (15.54, 2.71),
    "rednet-101": (25.65, 4.74),
    "resnet-50": (25.6, 4.1),
}


@pytest.mark.parametrize("name", list(PUBLISHED))
def test_params_and_macs_match_published(name: str) -> None:
    params_m, gmacs = PUBLISHED[name]
    cost = count_macs(build_model(name))
    assert cost.params / 1e6 == pytest.approx(params_m, rel=0.02)
    # The published counts come from a counter that adds BN/ReLU/pool/bias terms.
    assert cost.macs_with_elementwise / 1e9 == pytest.approx(gmacs, rel=0.02)
    # ...which are small: the conv/linear/aggregation MACs alone stay within 3%.
    assert cost.macs / 1e9 == pytest.approx(gmacs, rel=0.03)


def test_issue_figures_rednet50_vs_resnet50() -> None:
    red, res = count_macs(build_model("rednet-50")), count_macs(build_model("resnet-50"))
    assert red.params / 1e6 == pytest.approx(15.5, rel=0.02)
    assert red.macs_with_elementwise / 1e9 == pytest.approx(2.7, rel=0.02)
    assert red.macs / 1e9 == pytest.approx(2.7, rel=0.02)
    assert res.params / 1e6 == pytest.approx(25.6, rel=0.02)
    assert res.macs / 1e9 == pytest.approx(4.1, rel=0.02)
    # RedNet-50 has about a third fewer MACs than ResNet-50
    assert 0.6 < red.macs / res.macs < 0.7


def test_counter_on_hand_computed_modules() -> None:
    inv = Involution(32, 7, 2)
    model = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1, bias=False), inv)
    cost = count_macs(model, image_size=16)
    conv = 16 * 16 * 32 * 3 * 9
    ho = 8
    reduce = ho * ho * 32 * 8
    span = ho * ho * 8 * 49 * 2
    aggregation = 32 * ho * ho * 49
    assert cost.macs == conv + reduce + span + aggregation
    assert cost.involution_macs == aggregation
    # span bias + BN (affine: 2 per element)
    assert cost.elementwise_macs == ho * ho * 49 * 2 + 2 * ho * ho * 8
    assert cost.params == count_params(model) == 3 * 32 * 9 + 32 * 8 + 16 + 8 * 98 + 98


def test_structure_and_forward() -> None:
    red = build_model("rednet-26")
    inv = [m for m in red.modules() if isinstance(m, Involution)]
    # stem + one per bottleneck
    assert len(inv) == 1 + sum((1, 2, 4, 1))
    assert [m.kernel_size for m in inv[:2]] == [3, 7]
    assert sorted({m.stride for m in inv}) == [1, 2]
    res = build_model("resnet-26")
    assert not any(isinstance(m, Involution) for m in res.modules())
    x = torch.randn(2, 3, 32, 48)
    for model in (red, res):
        assert model.eval()(x).shape == (2, 1000)


def test_backend_is_selectable_and_names_checked() -> None:
    model = build_model("rednet-26", backend="compile")
    assert {m.backend for m in model.modules() if isinstance(m, Involution)} == {"compile"}
    with pytest.raises(ValueError, match="unknown model"):
        build_model("vgg-16")
    with pytest.raises(ValueError, match="no ResNet-18"):
        build_model("resnet-18")
