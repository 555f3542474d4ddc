"""swin-kernels: fused kernels for Swin Transformer's (shifted) window attention."""

from .backends import BackendUnavailableError, FallbackWarning, available_backends
from .bias import dense_bias
from .explain import explain
from .export import install as _install_onnx_translations, onnx_translation_table
from .functional import shifted_window_attention, window_partition, window_reverse
from .modules import FusedWindowAttention
from .patches import patch, unpatch

__all__ = [
    "BackendUnavailableError",
    "FallbackWarning",
    "FusedWindowAttention",
    "available_backends",
    "dense_bias",
    "explain",
    "onnx_translation_table",
    "patch",
    "shifted_window_attention",
    "unpatch",
    "window_partition",
    "window_reverse",
]
__version__ = "0.1.0"

_install_onnx_translations()  # torch.onnx.export(..., dynamo=True) finds the fused ops' translations
