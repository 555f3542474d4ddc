"""laion_clap's HTSAT audio encoder (the official classification block layout, forward(x)) patched vs unpatched.

HTSAT's ``BasicLayer`` stacks ``SwinTransformerBlock``s of the official classification code (map size fixed at
construction by ``input_resolution``, the window clamped there, the shift mask an ``attn_mask`` buffer) that also
return their attention probabilities; in eval mode the layer averages them, and the model never reads the result.
The library's own code is tested, imported without its audio front end (tests/htsat_standin.py). fp64: outputs and
all gradients <= 1e-10, every block patched and fused once per forward; the patched blocks' second output is empty.
"""

from __future__ import annotations

import pytest
import torch

import swin_kernels
from swin_kernels.patches import family_of, official_swin

from family_checks import check_fp32, check_fp64, randomize
from htsat_standin import available, import_htsat

if available() is not None:
    pytest.skip(available(), allow_module_level=True)
htsat = import_htsat()


class Stage(torch.nn.Module):
    """One HTSAT stage on a (B, H·W, C) token map; returns the layer's tokens (what the model reads)."""

    def __init__(self, **kwargs):
        super().__init__()
        self.layer = htsat.BasicLayer(**kwargs)

    def forward(self, x):
        out, _attention = self.layer(x)
        return out


# (input_resolution, window, layer options): shifted 2x2 windows with patch merging; a clamped window (the map's
# smaller side is not larger than the window: windows of that side, unshifted); HTSAT's BatchNorm-before-MLP
# variant (its BatchNorm is built per call in fp32, so it runs in fp32 only).
CASES = {
    "shifted": ((8, 8), 4, dict(downsample=htsat.PatchMerging)),
    "clamped": ((4, 8), 8, {}),
    "batchnorm": ((8, 12), 4, dict(norm_before_mlp="bn")),
}
FP64_CASES = ["shifted", "clamped"]


def _model(case):
    resolution, window, options = CASES[case]
    torch.manual_seed(0)
    model = Stage(dim=12, input_resolution=resolution, depth=2, num_heads=3, window_size=window, drop_path=0.0,
                  **options)
    x = torch.randn(2, resolution[0] * resolution[1], 12)
    return randomize(model), x


@pytest.mark.parametrize("backend", ["reference", "cpp"])
@pytest.mark.parametrize("case", FP64_CASES)
def test_fp64(case, backend):
    model, x = _model(case)
    blocks = sum(family_of(m) is official_swin for m in model.modules())
    assert blocks == 2
    check_fp64(model, x, backend, blocks)


@pytest.mark.parametrize("case", ["shifted", "batchnorm"])
def test_fp32_cpp(case):
    model, x = _model(case)
    if case == "batchnorm":  # its per-call fp32 BatchNorm rules out the fp64 truth: patched vs unpatched in fp32
        model = model.eval()
        expected = model(x)
        patched = swin_kernels.patch(model, backend="cpp")
        assert torch.allclose(patched(x), expected, rtol=1e-5, atol=1e-5)
        return
    check_fp32(model, x, "cpp")


def test_triton_interpreter():
    pytest.importorskip("triton", reason="triton is not installed")
    model, x = _model("shifted")
    check_fp64(model, x, "triton", 2)


def test_patched_blocks_return_an_empty_attention_and_the_layer_still_averages():
    model, x = _model("shifted")
    model = model.double().eval()
    patched = swin_kernels.patch(model, backend="cpp")
    block = patched.layer.blocks[1]
    out, attention = block(x.double())
    assert out.shape == x.shape and attention.numel() == 0
    _, averaged = patched.layer(x.double())  # eval mode: the layer concatenates and averages them
    assert averaged.numel() == 0


def test_a_foreign_attn_mask_runs_the_blocks_own_code():
    model, x = _model("shifted")
    model = model.double().eval()
    expected = model(x.double())
    patched = swin_kernels.patch(model, backend="cpp")
    with torch.no_grad():
        patched.layer.blocks[1].attn_mask.mul_(0.5)
        expected_changed = htsat.SwinTransformerBlock.forward(patched.layer.blocks[1], x.double())[0]
    with pytest.warns(UserWarning, match="attn_mask buffer is not the shift mask"):
        got = patched.layer.blocks[1](x.double())[0]
    assert torch.equal(got, expected_changed)
    assert expected.shape[1] == x.shape[1] // 4
