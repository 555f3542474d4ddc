"""MONAI SwinUNETR (spatial_dims=2) patched vs MONAI itself (3-D volumes: tests/test_patching_3d.py).

A 64x64 input clamps the last stage (4x4 map, window 7: one 4x4 window, no shift) where MONAI biases the window
with relative_position_index[:16, :16] rather than the table's centre; 96x64 pads (48x32 ... 12x8 with window 7) and
clamps the last stage per axis (6x4).
"""

import pytest
import torch

from family_checks import check_fp32, check_fp64, randomize
from swin_kernels.bias import relative_position_bias

nets = pytest.importorskip("monai.networks.nets", reason="monai is not installed")
pytest.importorskip("einops", reason="einops is not installed (SwinUNETR rearranges with it)")


def _unetr(window=7):
    torch.manual_seed(0)
    return randomize(nets.SwinUNETR(in_channels=1, out_channels=2, feature_size=12, spatial_dims=2,
                                    depths=(2, 2, 2, 2), num_heads=(1, 1, 2, 2), window_size=window))


def _encoder(window=7):
    """SwinUNETR's Swin encoder (every block of the model; its convolutional decoder is not what is patched)."""
    return _unetr(window).swinViT


SIZES = {"clamped_64": (64, 64), "padded_96x64": (96, 64)}


@pytest.mark.parametrize("backend", ["reference", "cpp"])
@pytest.mark.parametrize("size", ["clamped_64", "padded_96x64"])
def test_fp64(size, backend):
    """Encoder blocks (the whole SwinUNETR forward patched vs unpatched is benchmarks/test_end_to_end_medical)."""
    check_fp64(_encoder(), torch.randn(1, 1, *SIZES[size]), backend, 8)


def test_fp32_cpp():
    check_fp32(_encoder(), torch.randn(1, 1, 64, 64), "cpp")


def test_triton_interpreter():
    pytest.importorskip("triton", reason="triton is not installed")
    check_fp64(_encoder(window=4), torch.randn(1, 1, 32, 32), "triton", 8)


def test_clamped_bias_is_monais_not_the_centre():
    """The case the family exists for: on a clamped window MONAI's bias differs from the table-centre bias."""
    attn = _unetr().swinViT.layers4[0].blocks[0].attn
    from swin_kernels.patches.monai_swin import clamped_bias

    monai_bias = clamped_bias(attn, 16)
    centre = relative_position_bias(attn.relative_position_bias_table, (4, 4), table_window=(7, 7))
    assert (monai_bias - centre).abs().max() > 1e-3
