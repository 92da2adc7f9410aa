"""The resnet-shapes layers for the static-analysis tools, read from the suite file.

Names as in suites/resnet-shapes.toml, with "-first" shortened to "-1st"; values are
(channels, height, stride, kernel size, groups).
"""

from __future__ import annotations

from invbench.core.suites import find_suite


def resnet_layers() -> dict[str, tuple[int, int, int, int, int]]:
    layers = {}
    for case in find_suite("resnet-shapes").cases:
        g = case.geometry
        name = case.name.replace("-first", "-1st")
        layers[name] = (g.channels, g.height, g.stride, g.kernel_size, g.groups)
    return layers


LAYERS = resnet_layers()
