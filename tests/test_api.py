"""The public API contract: names, shapes, state-dict compatibility, backend selection and clear errors."""

import pytest
import torch

import swin_kernels
from swin_kernels import FusedWindowAttention, reference_model as rm
from swin_kernels.backends import BackendUnavailableError

from hf_swin import config, randomize_


def test_public_names():
    for name in ["FusedWindowAttention", "window_partition", "window_reverse", "available_backends", "patch",
                 "unpatch", "shifted_window_attention", "BackendUnavailableError"]:
        assert hasattr(swin_kernels, name)
    assert "reference" in swin_kernels.available_backends()
    assert set(swin_kernels.available_backends()) <= {"reference", "triton", "cpp", "cuda"}


@pytest.mark.parametrize("height,width", [(1, 1), (3, 17), (7, 7), (20, 9), (56, 56)])
@pytest.mark.parametrize("shift", [0, 3])
def test_module_matches_reference_block_on_any_size(height, width, shift):
    torch.manual_seed(height * width + shift)
    block = rm.SwinTransformerBlock(32, 4, 7, shift).double()
    fused = FusedWindowAttention.from_window_attention(block.attn, shift, backend="reference")
    x = torch.randn(2, height, width, 32, dtype=torch.float64)
    torch.testing.assert_close(fused(x), block.attention_branch(x), rtol=1e-12, atol=1e-12)


def test_official_state_dict_loads():
    """An official/timm WindowAttention state dict (which also stores relative_position_index) loads strict=False."""
    official = rm.WindowAttention(48, 7, 3)
    state = dict(official.state_dict())
    state["relative_position_index"] = official.relative_position_index  # persistent in the official code
    fused = FusedWindowAttention(48, 3, 7, 3)
    result = fused.load_state_dict(state, strict=False)
    assert result.missing_keys == [] and result.unexpected_keys == ["relative_position_index"]
    assert set(fused.state_dict()) == set(official.state_dict())
    assert torch.equal(fused.relative_position_bias_table, official.relative_position_bias_table)


def test_from_hf_attention_matches_hf_layer():
    """from_window_attention on HF's SwinAttention reproduces HF's attention branch."""
    from transformers.models.swin import modeling_swin as hf

    layer = randomize_(hf.SwinLayer(config(window_size=4), 16, (9, 10), 2, shift_size=2)).double().eval()
    fused = FusedWindowAttention.from_window_attention(layer.attention, 2, backend="reference")
    x = torch.randn(3, 9, 10, 16, dtype=torch.float64)
    normed = layer.layernorm_before(x)
    ours = x + fused(normed)  # the block's first residual; HF's layer returns it after the MLP as well
    mlp_out = layer.mlp(layer.layernorm_after(ours)) + ours
    theirs = layer(x.reshape(3, 90, 16), (9, 10))[0].reshape(3, 9, 10, 16)
    torch.testing.assert_close(mlp_out, theirs, rtol=1e-12, atol=1e-12)


def test_non_contiguous_inputs():
    fused = FusedWindowAttention(16, 2, 4, 2, backend="reference").double()
    x = torch.randn(2, 16, 11, 9, dtype=torch.float64).permute(0, 2, 3, 1)  # (2, 11, 9, 16), non-contiguous
    assert not x.is_contiguous()
    torch.testing.assert_close(fused(x), fused(x.contiguous()), rtol=1e-12, atol=1e-12)
    windows = swin_kernels.window_partition(x, 4, 2)
    assert torch.equal(swin_kernels.window_reverse(windows.transpose(1, 2).contiguous().transpose(1, 2), 4, 11, 9, 2), x)


def test_partition_shapes():
    x = torch.randn(3, 10, 13, 5)
    windows = swin_kernels.window_partition(x, 4, 1)
    assert windows.shape == (3 * 3 * 4, 16, 5)
    assert swin_kernels.window_reverse(windows, 4, 10, 13, 1).shape == x.shape
    rectangular = swin_kernels.window_partition(x, (2, 5), (1, 0), roll_before_pad=True)
    assert rectangular.shape == (3 * 5 * 3, 10, 5)
    back = swin_kernels.window_reverse(rectangular, (2, 5), 10, 13, (1, 0), roll_before_pad=True)
    assert torch.equal(back, x)


@pytest.mark.parametrize("rule, expected", [
    ("official", ((5, 5), (0, 0))),     # the smaller side is not larger than the window: one window of it
    ("per_axis", ((5, 7), (0, 3))),     # timm: only the short axis is clamped and unshifted
    ("shift_only", ((7, 7), (0, 3))),   # torchvision: the window stays, the short axis is unshifted
    ("none", ((7, 7), (3, 3))),
])
def test_clamping_rules_of_each_family(rule, expected):
    from swin_kernels.geometry import clamp_window

    assert clamp_window(5, 20, 7, 3, rule) == expected


def test_module_with_rectangular_window_and_timm_order_matches_reference():
    torch.manual_seed(0)
    module = FusedWindowAttention(16, 2, (3, 5), (1, 2), backend="reference", roll_before_pad=True).double()
    assert module.relative_position_bias_table.shape == (5 * 9, 2)
    x = torch.randn(2, 7, 11, 16, dtype=torch.float64)
    from swin_kernels import reference as ref

    qkv = module.qkv(x)
    bias = ref.relative_position_bias(module.relative_position_bias_table, (3, 5), table_window=(3, 5))
    expected = module.proj(ref.shifted_window_attention(qkv, 2, (3, 5), (1, 2), module.qkv.bias, bias,
                                                        module.scale, roll_before_pad=True))
    torch.testing.assert_close(module(x), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("call,error,match", [
    (lambda: swin_kernels.window_partition(torch.randn(2, 8, 8), 4), ValueError, "shape \\(B, H, W, C\\)"),
    (lambda: swin_kernels.window_partition(torch.randn(2, 8, 8, 3), 4, 4), ValueError, "shift_size"),
    (lambda: swin_kernels.window_partition(torch.randn(2, 8, 8, 3), 0), ValueError, "window_size must be >= 1"),
    (lambda: swin_kernels.window_partition(torch.randn(2, 8, 8, 3), 4, -1), ValueError, "shift_size"),
    (lambda: swin_kernels.window_partition(torch.randn(2, 0, 8, 3), 4), ValueError, "empty dimension"),
    (lambda: swin_kernels.window_partition(torch.ones(2, 8, 8, 3, dtype=torch.long), 4), TypeError, "floating"),
    (lambda: swin_kernels.window_reverse(torch.randn(5, 16, 3), 4, 8, 8), ValueError, "do not tile"),
    (lambda: swin_kernels.window_reverse(torch.randn(8, 9, 3), 4, 8, 8), ValueError, "do not tile"),
    (lambda: swin_kernels.window_reverse(torch.randn(4, 16, 3), 4, -8, 8), ValueError, "at least 1x1"),
    (lambda: FusedWindowAttention(30, 4), ValueError, "multiple of num_heads"),
    (lambda: FusedWindowAttention(32, 4, 7, 7), ValueError, "shift_size"),
    (lambda: FusedWindowAttention(32, 4, backend="nope"), ValueError, "unknown backend"),
    (lambda: FusedWindowAttention(32, 4)(torch.randn(2, 8, 8, 16)), ValueError, "expected 32 channels"),
    (lambda: FusedWindowAttention(32, 4)(torch.randn(8, 8, 32)), ValueError, "shape \\(B, H, W, C\\)"),
    (lambda: FusedWindowAttention(32, 4)(torch.randn(2, 8, 8, 32, dtype=torch.float64)), RuntimeError, "dtype"),
    (lambda: swin_kernels.shifted_window_attention(torch.randn(1, 8, 8, 30), 4, 4), ValueError, "3 \\* num_heads"),
    (lambda: swin_kernels.shifted_window_attention(torch.randn(1, 8, 8, 24), 2, 4, bias=torch.randn(2, 9, 9)),
     ValueError, "bias must have shape"),
    (lambda: swin_kernels.shifted_window_attention(torch.randn(1, 8, 8, 24), 2, 4, pad_qkv=torch.randn(23)),
     ValueError, "pad_qkv must have shape"),
    (lambda: swin_kernels.shifted_window_attention(torch.randn(1, 8, 8, 24), 2, 4,
                                                   pad_qkv=torch.randn(24, dtype=torch.float64)), TypeError, "dtype"),
    (lambda: swin_kernels.shifted_window_attention(torch.randn(1, 8, 8, 24), 2, 4,
                                                   bias=torch.randn(2, 16, 16, device="meta")), ValueError, "meta"),
    (lambda: swin_kernels.shifted_window_attention(torch.randn(1, 8, 8, 24), 2, 4, dropout_p=1.0), ValueError,
     "dropout_p"),
    (lambda: swin_kernels.window_partition(torch.randn(1, 8, 8, 3), (4, 2), (1, 2)), ValueError,
     "shift 2 and window 2 along the columns"),
    (lambda: swin_kernels.window_partition(torch.randn(1, 8, 8, 3), (4, 0)), ValueError, "window_size must be >= 1"),
    (lambda: swin_kernels.window_partition(torch.randn(1, 8, 8, 3), (4, 2, 1)), ValueError,
     "a \\(B, H, W, C\\) map needs a window and shift of 1 or 2 ints"),
    (lambda: swin_kernels.window_partition(torch.randn(1, 8, 8, 3), (4, 2, 1, 1)), TypeError, "pair of ints"),
    (lambda: swin_kernels.window_partition(torch.randn(1, 2, 8, 8, 3), (4, 2)), ValueError,
     "needs a window and shift of 3 ints"),
    (lambda: swin_kernels.window_partition(torch.randn(1, 2, 8, 8, 3), (2, 4, 4), (0, 4, 0)), ValueError,
     "shift 4 and window 4 along the rows"),
    (lambda: swin_kernels.window_reverse(torch.randn(8, 32, 3), (2, 4, 4), 8, 8), ValueError, "pass depth="),
    (lambda: swin_kernels.window_reverse(torch.randn(5, 32, 3), (2, 4, 4), 8, 8, depth=2), ValueError,
     "do not tile a 2x8x8 volume"),
    (lambda: swin_kernels.window_partition(torch.randn(1, 8, 8, 3), 4.0), TypeError, "int or a pair"),
    (lambda: swin_kernels.window_partition(torch.randn(1, 8, 8, 3), 4, roll_before_pad="yes"), TypeError,
     "roll_before_pad must be a bool"),
    (lambda: swin_kernels.shifted_window_attention(torch.randn(1, 8, 8, 24), 2, (4, 2), bias=torch.randn(2, 16, 16)),
     ValueError, "bias must have shape \\(2, 8, 8\\)"),
    (lambda: FusedWindowAttention(32, 4, (7, 5), 3, window_clamp="official"), ValueError, "square"),
    (lambda: FusedWindowAttention(32, 4, 7, 3, window_clamp="sometimes"), ValueError, "unknown window_clamp"),
])
def test_bad_input_raises_a_clear_error(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_unknown_or_unavailable_backend_says_why(monkeypatch):
    x = torch.randn(1, 8, 8, 4)
    with pytest.raises(ValueError, match="unknown backend"):
        swin_kernels.window_partition(x, 4, backend="bogus")
    unavailable = [name for name in ("triton", "cpp", "cuda") if name not in swin_kernels.available_backends()]
    for name in unavailable:
        with pytest.raises(BackendUnavailableError, match=f"^{name}: .+"):
            swin_kernels.window_partition(x, 4, backend=name)
    monkeypatch.setenv("SWIN_KERNELS_BACKEND", "bogus")
    with pytest.raises(ValueError, match="unknown backend"):
        swin_kernels.window_partition(x, 4)  # the override applies to "auto"
    monkeypatch.setenv("SWIN_KERNELS_BACKEND", "reference")
    assert torch.equal(swin_kernels.window_partition(x, 4), swin_kernels.window_partition(x, 4, backend="reference"))


def test_triton_reason_without_gpu_or_interpreter(monkeypatch):
    """Without a GPU and without TRITON_INTERPRET, asking for triton names both missing pieces."""
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present, so triton can run")
    from swin_kernels import backends

    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    reason = backends.unavailable_reason("triton")
    assert reason is not None and "TRITON_INTERPRET" in reason and "CUDA" in reason


def test_backends_the_build_promises_are_available():
    """`make test` names the backends this machine must have (so a failed build cannot turn into skipped tests)."""
    import os

    from swin_kernels import backends

    expected = os.environ.get("SWIN_KERNELS_EXPECT_BACKENDS")
    if not expected:
        pytest.skip("SWIN_KERNELS_EXPECT_BACKENDS is not set (make test sets it)")
    for name in expected.split(","):
        assert backends.unavailable_reason(name) is None, f"{name}: {backends.unavailable_reason(name)}"


def test_attention_on_geometry_refuses_a_geometry_of_another_map():
    from swin_kernels.functional import attention_on_geometry
    from swin_kernels.geometry import WindowGeometry

    qkv = torch.randn(1, 14, 14, 3 * 8, dtype=torch.float64)
    with pytest.raises(ValueError, match="does not hold the 14x7 map"):
        attention_on_geometry(qkv, 2, WindowGeometry(14, 7, 7, 0), backend="reference")
    same = attention_on_geometry(qkv, 2, WindowGeometry(14, 14, 7, 3), backend="reference")
    torch.testing.assert_close(same, swin_kernels.functional.shifted_window_attention(qkv, 2, 7, 3,
                                                                                       backend="reference"))
