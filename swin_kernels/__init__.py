"""swin-kernels: fused kernels for Swin Transformer's (shifted) window attention."""

from .backends import BackendUnavailableError, available_backends
from .functional import shifted_window_attention, window_partition, window_reverse
from .modules import FusedWindowAttention
from .patches import patch, unpatch

__all__ = [
    "BackendUnavailableError",
    "FusedWindowAttention",
    "available_backends",
    "patch",
    "shifted_window_attention",
    "unpatch",
    "window_partition",
    "window_reverse",
]
__version__ = "0.1.0"
