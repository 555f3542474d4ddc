"""The official Swin block layout (patches/official_swin.py) patched vs the libraries' own models.

spandrel's SwinIR, DRCT (forward(x, x_size), pre-norm), Swin2SR (V2 attention, post-norm) and HAT (HAB blocks with
the model's relative position index and mask), and GroundingDINO's copy of the official detection Swin
(forward(x, mask_matrix), pad then roll). Maps are padded by the models (restoration) or by the blocks (detection);
clamped windows (the block's construction-time rule) and maps of another size than input_resolution (the per-call
mask) are included. fp64: outputs and all gradients <= 1e-10, every block patched and fused once per forward.
"""

from __future__ import annotations

import warnings

import pytest
import torch

import swin_kernels
from swin_kernels.patches import family_of, official_swin

from family_checks import check_fp32, check_fp64, randomize
from tools.groundingdino_backbone import backbone_module

pytest.importorskip("spandrel", reason="spandrel is not installed (pyproject test)")
from spandrel.architectures.DRCT.__arch.drct_arch import DRCT  # noqa: E402
from spandrel.architectures.HAT.__arch.HAT import HAT  # noqa: E402
from spandrel.architectures.Swin2SR.__arch.Swin2SR import Swin2SR  # noqa: E402
from spandrel.architectures.SwinIR.__arch.SwinIR import SwinIR  # noqa: E402


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _groundingdino_swin():
    module = backbone_module()
    if module is None:
        pytest.skip("rf-groundingdino is not installed (pyproject test-no-deps)")
    return module


class _DetectionBackbone(torch.nn.Module):
    """GroundingDINO's SwinTransformer without its NestedTensor wrapper: forward_raw returns the stage outputs."""

    def __init__(self, **kwargs):
        super().__init__()
        self.swin = _groundingdino_swin().SwinTransformer(**kwargs)

    def forward(self, x):
        return self.swin.forward_raw(x)


def _model(case):
    torch.manual_seed(0)
    if case == "swinir":  # 13x22 image, padded by the model to 16x24; upscale 2
        model = SwinIR(img_size=16, embed_dim=12, depths=[2, 2], num_heads=[2, 2], window_size=4, upscale=2,
                       upsampler="pixelshuffle")
        x = torch.randn(1, 3, 13, 22)
    elif case == "swinir_resolution":  # the map is input_resolution: the blocks' attn_mask buffers are used
        model = SwinIR(img_size=16, embed_dim=12, depths=[2], num_heads=[3], window_size=4, upsampler="")
        x = torch.randn(2, 3, 16, 16)
    elif case == "swinir_clamped":  # input_resolution 4 <= window 8: the blocks' window is 4, unshifted
        model = SwinIR(img_size=4, embed_dim=12, depths=[2], num_heads=[2], window_size=8, upsampler="")
        x = torch.randn(1, 3, 8, 16)  # 2x4 windows of 4x4
    elif case == "drct":
        model = DRCT(img_size=16, embed_dim=12, gc=8, depths=[2], num_heads=[2], window_size=4, upscale=2,
                     upsampler="pixelshuffle")
        x = torch.randn(1, 3, 16, 20)  # DRCT does not pad: a multiple of the window
    elif case == "swin2sr":
        model = Swin2SR(img_size=16, embed_dim=12, depths=[2, 2], num_heads=[2, 2], window_size=4, upscale=1,
                        upsampler="")
        x = torch.randn(1, 3, 13, 22)
    elif case == "hat":  # HAB blocks (window 4) beside an OCAB, which is not window self-attention
        model = HAT(img_size=16, embed_dim=30, squeeze_factor=3, depths=[2], num_heads=[2], window_size=4,
                    upscale=2)
        x = torch.randn(1, 3, 13, 22)
    elif case == "detection":  # 11x13 then 6x7 maps, window 4: padded by the blocks, never clamped
        model = _DetectionBackbone(embed_dim=12, depths=[2, 2], num_heads=[2, 2], window_size=4, drop_path_rate=0.0,
                                   out_indices=(0, 1))
        x = torch.randn(1, 3, 44, 52)
    elif case == "detection_small":  # a 3x4 map under a window 5: one padded window
        model = _DetectionBackbone(embed_dim=12, depths=[2], num_heads=[2], window_size=5, drop_path_rate=0.0,
                                   out_indices=(0,))
        x = torch.randn(1, 3, 12, 16)
    else:
        raise ValueError(case)
    return randomize(model), x


def _blocks(model):
    return sum(family_of(m) is official_swin for m in model.modules())


CASES = ["swinir", "swinir_resolution", "swinir_clamped", "drct", "swin2sr", "hat", "detection", "detection_small"]


@pytest.mark.parametrize("backend", ["reference", "cpp"])
@pytest.mark.parametrize("case", CASES)
def test_fp64(case, backend):
    model, x = _model(case)
    blocks = _blocks(model)
    assert blocks >= 1
    check_fp64(model, x, backend, blocks)


@pytest.mark.parametrize("case", ["swinir", "swin2sr", "hat", "detection"])
def test_fp32_cpp(case):
    model, x = _model(case)
    check_fp32(model, x, "cpp")


def test_triton_interpreter():
    pytest.importorskip("triton", reason="triton is not installed")
    torch.manual_seed(0)
    model = randomize(SwinIR(img_size=8, embed_dim=8, depths=[2], num_heads=[1], window_size=4, upsampler=""))
    check_fp64(model, torch.randn(1, 3, 8, 8), "triton", 2)


def test_clamped_window_is_the_blocks():
    model, _ = _model("swinir_clamped")
    blocks = [m for m in model.modules() if family_of(m) is official_swin]
    assert [(b.window_size, b.shift_size) for b in blocks] == [(4, 0), (4, 0)]


def test_a_foreign_mask_runs_the_blocks_own_code():
    """A mask that is not the shift mask of the map (here: none at all between regions) is the block's to apply."""
    model, _ = _model("detection")
    model = model.double().eval()
    block = model.swin.layers[0].blocks[1]
    assert block.shift_size > 0
    block.H, block.W = 11, 13
    x = torch.randn(1, 11 * 13, 12, dtype=torch.float64)
    mask = torch.zeros(12, 16, 16, dtype=torch.float64)  # 3x4 windows of 4x4 tokens, all zeros
    expected = block(x, mask)
    swin_kernels.patch(model, backend="reference")
    with pytest.warns(swin_kernels.backends.FallbackWarning, match="mask_matrix"):
        got = block(x, mask)
    assert torch.equal(got, expected)


def test_ocab_is_neither_patched_nor_named_a_lookalike():
    model, _ = _model("hat")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        swin_kernels.patch(model, backend="reference")
    patched = [type(m).__name__ for m in model.modules() if swin_kernels.patches.is_patched(m)]
    assert patched == ["HAB", "HAB"]
    assert not any("HAB" in str(w.message) or "OCAB" in str(w.message) for w in caught)
    assert swin_kernels.patches.unpatched_lookalikes(model) == []
    ocab = model.layers[0].residual_group.overlap_attn
    assert "OCAB" in official_swin.not_window_attention_reason(ocab)
    assert all(official_swin.not_window_attention_reason(m) is None for m in model.modules() if m is not ocab)


def test_other_forward_layouts_are_declined_with_a_reason():
    """A block of the official structure whose forward this version does not know is named, not silently kept."""

    class Block(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = SwinIR(img_size=8, embed_dim=8, depths=[1], num_heads=[1], window_size=4,
                               upsampler="").layers[0].residual_group.blocks[0].attn
            self.window_size, self.shift_size = 4, 0

        def forward(self, x):
            return x

    block = Block()
    assert family_of(block) is official_swin
    assert "forward(x)" in official_swin.unsupported_reason(block)
    with pytest.warns(UserWarning, match="Block block"):
        swin_kernels.patch(torch.nn.Sequential(block), backend="reference")
