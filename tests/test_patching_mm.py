"""OpenMMLab's ShiftWindowMSA (mmpretrain V1/V2, mmdet, mmseg) patched vs the libraries' own backbones.

The libraries run as installed (mmcv-lite plus tests/mmcv_ext_standin.py for mmcv's compiled ops, which the Swin
backbones never call). Maps are padded (not window multiples); mmpretrain's pad_small_map case keeps a window
larger than the map (clamp "none"), its default drops the shift where the smaller side equals the window.
"""

import pytest
import torch

from family_checks import check_fp32, check_fp64, randomize
from mmcv_ext_standin import install_all

pytest.importorskip("mmengine", reason="mmengine is not installed (pyproject test-no-deps)")
install_all()
mmpretrain_backbones = pytest.importorskip("mmpretrain.models.backbones", reason="mmpretrain is not installed")
mmdet_backbones = pytest.importorskip("mmdet.models.backbones", reason="mmdet is not installed")
mmseg_backbones = pytest.importorskip("mmseg.models.backbones", reason="mmsegmentation is not installed")

ARCH = dict(embed_dims=16, depths=[2, 2], num_heads=[2, 2])


def _model(name):
    torch.manual_seed(0)
    if name == "mmpretrain_v1":
        model = mmpretrain_backbones.SwinTransformer(arch=ARCH, img_size=56, window_size=3, out_indices=(0, 1))
        x = torch.randn(1, 3, 52, 44)  # 13x11 then 7x6 (padded; the last stage's smaller side 6 > 3)
    elif name == "mmpretrain_v1_equal":  # stage 2 map 4x6: smaller side == window 4: shift dropped
        model = mmpretrain_backbones.SwinTransformer(arch=ARCH, img_size=56, window_size=4, out_indices=(0, 1))
        x = torch.randn(1, 3, 32, 48)
    elif name == "mmpretrain_v1_pad_small":  # window 7 over 10x11 and 5x6 maps: padded, never clamped
        model = mmpretrain_backbones.SwinTransformer(arch=ARCH, img_size=56, window_size=7, pad_small_map=True,
                                                     out_indices=(0, 1))
        x = torch.randn(1, 3, 40, 44)
    elif name == "mmpretrain_v2":
        model = mmpretrain_backbones.SwinTransformerV2(arch=dict(ARCH, extra_norm_every_n_blocks=0), img_size=56,
                                                       window_size=4, out_indices=(0, 1))
        x = torch.randn(1, 3, 52, 44)
    elif name == "mmdet":  # 11x13 then 6x7 with window 4: padded; never clamped
        model = mmdet_backbones.SwinTransformer(embed_dims=16, depths=[2, 2], num_heads=[2, 2], window_size=4,
                                                strides=(4, 2), out_indices=(0, 1))
        x = torch.randn(1, 3, 44, 52)
    elif name == "mmdet_small":  # 3x4 map, window 5: the window is larger than the map
        model = mmdet_backbones.SwinTransformer(embed_dims=16, depths=[2], num_heads=[2], window_size=5,
                                                strides=(4,), out_indices=(0,))
        x = torch.randn(1, 3, 12, 16)
    else:
        model = mmseg_backbones.SwinTransformer(embed_dims=16, depths=[2, 2], num_heads=[2, 2], window_size=4,
                                                strides=(4, 2), out_indices=(0, 1))
        x = torch.randn(1, 3, 44, 52)
    return randomize(model), x


CASES = ["mmpretrain_v1", "mmpretrain_v1_equal", "mmpretrain_v1_pad_small", "mmpretrain_v2", "mmdet", "mmdet_small",
         "mmseg"]


def _blocks(model):
    return sum(type(m).__name__ == "ShiftWindowMSA" for m in model.modules())


@pytest.mark.parametrize("backend", ["reference", "cpp"])
@pytest.mark.parametrize("case", CASES)
def test_fp64(case, backend):
    model, x = _model(case)
    check_fp64(model, x, backend, _blocks(model))


@pytest.mark.parametrize("case", ["mmpretrain_v1", "mmpretrain_v2", "mmdet"])
def test_fp32_cpp(case):
    model, x = _model(case)
    check_fp32(model, x, "cpp")


@pytest.mark.parametrize("case", ["mmpretrain_v1", "mmpretrain_v2"])
def test_triton_interpreter(case):
    pytest.importorskip("triton", reason="triton is not installed")
    model = randomize(mmpretrain_backbones.SwinTransformer(arch=dict(embed_dims=8, depths=[2], num_heads=[1]),
                                                           img_size=32, window_size=3, out_indices=(0,))
                      if case == "mmpretrain_v1" else mmpretrain_backbones.SwinTransformerV2(
                          arch=dict(embed_dims=8, depths=[2], num_heads=[1], extra_norm_every_n_blocks=0),
                          img_size=32, window_size=3, out_indices=(0,)))
    check_fp64(model, torch.randn(1, 3, 20, 16), "triton", 2)


def test_smaller_side_below_window_raises_as_the_library():
    """mmpretrain without pad_small_map refuses a map smaller than the window: the patched model does too."""
    import swin_kernels

    model, _ = _model("mmpretrain_v1_equal")
    model.eval()
    patched = swin_kernels.patch(model, backend="reference")
    with pytest.raises(AssertionError, match="pad_small_map"):
        patched(torch.randn(1, 3, 24, 48))
