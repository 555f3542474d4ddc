"""Backend implementations. Each submodule follows the protocol described in ``swin_kernels.backends``."""
