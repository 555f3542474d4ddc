"""timm SwinTransformerV2CrBlock (swinv2_cr_*) patched vs timm itself: cosine attention, the meta-MLP bias on
log-spaced coordinates (no 16·sigmoid), the qkv Linear's full bias, roll before pad; padded maps (a static mask
built for the padded size, or built per call: the block's dynamic_mask), per-axis clamping at construction."""

import pytest
import torch

from family_checks import check_fp32, check_fp64, randomize

timm = pytest.importorskip("timm", reason="timm is not installed")


def _model(size=(64, 64), window=4, **options):
    torch.manual_seed(0)
    model = timm.create_model("swinv2_cr_tiny_ns_224", pretrained=False, img_size=size, embed_dim=16, depths=(2, 2),
                              num_heads=(1, 2), window_size=window, num_classes=0, **options)
    return randomize(model)


@pytest.mark.parametrize("backend", ["reference", "cpp"])
@pytest.mark.parametrize("case", ["square", "clamped_axis", "padded", "padded_dynamic_mask"])
def test_fp64(case, backend):
    if case == "square":
        check_fp64(_model(), torch.randn(1, 3, 64, 64), backend, 4)
    elif case == "clamped_axis":  # second stage 8x3: rows keep window 4, columns clamp to 3 with no shift
        check_fp64(_model(size=(64, 24)), torch.randn(1, 3, 64, 24), backend, 4)
    else:  # 72x56 -> 18x14 and 9x7: padded; timm's static masks, or masks built per call
        model = _model(size=(72, 56))
        for block in model.modules():
            if type(block).__name__ == "SwinTransformerV2CrBlock":
                block.dynamic_mask = case == "padded_dynamic_mask"
        check_fp64(model, torch.randn(1, 3, 72, 56), backend, 4)


def test_fp32_cpp():
    check_fp32(_model(), torch.randn(1, 3, 64, 64), "cpp")


def test_triton_interpreter():
    pytest.importorskip("triton", reason="triton is not installed")
    check_fp64(_model(size=(32, 32)), torch.randn(1, 3, 32, 32), "triton", 4)
