"""The reference on volumes (B, D, H, W, C) against independent definitions: torchvision's Video Swin attention
(shifted_window_attention_3d, its relative position index) and MONAI's shift mask; and FusedWindowAttention's
3-D module on the reference and the cpp backend against torchvision's attention."""

import pytest
import torch
import torch.nn.functional as F

import swin_kernels
from swin_kernels import FusedWindowAttention
from swin_kernels import reference as ref
from swin_kernels.geometry import WindowGeometry

video = pytest.importorskip("torchvision.models.video.swin_transformer",
                            reason="torchvision's Video Swin is the independent 3-D definition")

# (D, H, W, window, shift): divisible, padded on every axis, shifted on one / every axis, Video Swin-T's window
VOLUMES = [
    (4, 6, 6, (2, 3, 3), (1, 1, 1)),
    (5, 9, 10, (2, 4, 3), (1, 2, 1)),
    (3, 7, 5, (3, 2, 2), (0, 1, 0)),
    (8, 14, 14, (8, 7, 7), (4, 3, 3)),
    (2, 3, 3, (2, 4, 4), (0, 0, 0)),
]


def torchvision_attention(x, qkv_weight, qkv_bias, table, heads, window, shift):
    """torchvision's 3-D shifted window attention with an identity projection (so its output is the core's)."""
    c = x.shape[-1]
    n = window[0] * window[1] * window[2]
    index = video.ShiftedWindowAttention3d(c, list(window), list(shift), heads).relative_position_index
    bias = table[index[:n, :n].flatten()].reshape(n, n, -1).permute(2, 0, 1).unsqueeze(0)
    eye = torch.eye(c, dtype=x.dtype)
    return video.shifted_window_attention_3d(x, qkv_weight, eye, bias, list(window), heads, list(shift),
                                             qkv_bias=qkv_bias, proj_bias=torch.zeros(c, dtype=x.dtype),
                                             training=False)


@pytest.mark.parametrize("volume", VOLUMES, ids=lambda v: "x".join(map(str, v[:3])) + f"_M{v[3]}_s{v[4]}")
def test_volume_attention_matches_torchvision(volume):
    d, h, w, window, shift = volume
    gen = torch.Generator().manual_seed(0)
    c, heads = 12, 3
    x = torch.randn(2, d, h, w, c, generator=gen, dtype=torch.float64)
    qkv_weight = torch.randn(3 * c, c, generator=gen, dtype=torch.float64) * 0.3
    qkv_bias = torch.randn(3 * c, generator=gen, dtype=torch.float64)
    table = torch.randn((2 * window[0] - 1) * (2 * window[1] - 1) * (2 * window[2] - 1), heads, generator=gen,
                        dtype=torch.float64)
    theirs = torchvision_attention(x, qkv_weight, qkv_bias, table, heads, window, shift)
    bias = ref.relative_position_bias(table, window, table_window=window)
    ours = ref.shifted_window_attention(F.linear(x, qkv_weight, qkv_bias), heads, window, shift, qkv_bias, bias)
    assert (ours - theirs).abs().max().item() <= 1e-12


@pytest.mark.parametrize("window", [(2, 2, 2), (8, 7, 7), (2, 3, 4)])
def test_volume_relative_position_index_matches_torchvision(window):
    theirs = video.ShiftedWindowAttention3d(8, list(window), [0, 0, 0], 2).relative_position_index
    n = window[0] * window[1] * window[2]
    assert torch.equal(ref.relative_position_index(window), theirs.reshape(n, n))


@pytest.mark.parametrize("volume", [(4, 7, 7, (2, 7, 7), (1, 3, 3)), (6, 10, 9, (3, 4, 4), (1, 2, 2))])
def test_volume_shift_mask_matches_monai(volume):
    swin_unetr = pytest.importorskip("monai.networks.nets.swin_unetr", reason="MONAI's mask is the other definition")
    d, h, w, window, shift = volume
    g = WindowGeometry(h, w, window, shift, depth=d)
    theirs = swin_unetr.compute_mask(list(g.padded_sizes), window, shift, "cpu")  # 0 / -100 per window pair
    assert torch.equal(ref.shift_attention_mask(g), theirs)


@pytest.mark.parametrize("backend", ["reference", "cpp"])
def test_fused_window_attention_on_volumes_matches_torchvision(backend):
    if swin_kernels.backends.unavailable_reason(backend) is not None:
        pytest.fail(f"{backend} cannot run: {swin_kernels.backends.unavailable_reason(backend)}")
    torch.manual_seed(0)
    module = FusedWindowAttention(24, 3, window_size=(2, 4, 4), shift_size=(1, 2, 2), backend=backend).double()
    with torch.no_grad():
        module.relative_position_bias_table.normal_()
    x = torch.randn(2, 3, 9, 6, 24, dtype=torch.float64, requires_grad=True)  # padded on every axis
    ours = module(x)
    theirs = torchvision_attention(x, module.qkv.weight, module.qkv.bias, module.relative_position_bias_table, 3,
                                   (2, 4, 4), (1, 2, 2))
    theirs = F.linear(theirs, module.proj.weight, module.proj.bias)
    assert ours.shape == x.shape
    assert (ours - theirs).abs().max().item() <= 1e-12
    grad = torch.randn_like(ours)
    assert torch.allclose(torch.autograd.grad(ours, x, grad)[0], torch.autograd.grad(theirs, x, grad)[0],
                          rtol=0, atol=1e-11)


def test_volume_module_clamps_per_axis_and_rejects_maps():
    module = FusedWindowAttention(8, 2, window_size=(8, 7, 7), shift_size=(4, 3, 3), backend="reference")
    g = module.geometry(4, 14, 7)  # depth and width not larger than their window: clamped, unshifted
    assert (g.window, g.shift) == ((4, 7, 7), (0, 3, 0))
    with pytest.raises(ValueError, match=r"\(B, D, H, W, C\)"):
        module(torch.randn(1, 14, 14, 8))
    with pytest.raises(ValueError, match="official clamping rule is for 2-D"):
        FusedWindowAttention(8, 2, window_size=(2, 7, 7), window_clamp="official")
