"""invbench: trustworthy numbers for involution and convolution kernels."""

from invbench.operator.ops import Involution, involution

__version__ = "0.1.0"
__all__ = ["Involution", "__version__", "involution"]
