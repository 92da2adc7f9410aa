"""Compact ResNet and RedNet definitions (bottleneck networks) for the model level."""

from invbench.models.count import ModelCost, count_macs, count_params
from invbench.models.resnet import DEPTHS, Bottleneck, Network, build_model, model_names

__all__ = [
    "DEPTHS",
    "Bottleneck",
    "ModelCost",
    "Network",
    "build_model",
    "count_macs",
    "count_params",
    "model_names",
]
