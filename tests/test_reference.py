"""Pieces of the reference against independent definitions: HF's index map and mask, and the fused-op contract
against the official block structure."""

import pytest
import torch
from transformers.models.swin import modeling_swin as hf

from swin_kernels import reference as ref
from swin_kernels import reference_model as rm
from swin_kernels.geometry import WindowGeometry

from hf_swin import config


@pytest.mark.parametrize("window", [1, 2, 4, 7, 12])
def test_relative_position_index_matches_hf(window):
    theirs = hf.SwinRelativePositionBias(1, (window, window)).relative_position_index.view(window**2, window**2)
    assert torch.equal(ref.relative_position_index(window), theirs)


def test_relative_position_index_of_a_larger_table_addresses_its_centre():
    small, large = ref.relative_position_index(3), ref.relative_position_index(3, table_window=7)
    side_small, side_large = 5, 13
    rows, cols = small // side_small, small % side_small
    assert torch.equal(large, (rows + 4) * side_large + (cols + 4))
    with pytest.raises(ValueError, match="cannot serve"):
        ref.relative_position_index(7, table_window=3)


@pytest.mark.parametrize("height,width,window,shift", [(8, 8, 4, 2), (12, 20, 4, 1), (14, 21, 7, 3), (9, 9, 3, 1)])
def test_shift_mask_matches_hf(height, width, window, shift):
    """On padded maps HF builds the mask on the padded size, as the reference does."""
    layer = hf.SwinLayer(config(window_size=window), 8, (height, width), 2, shift_size=shift)
    g = WindowGeometry(height, width, window, shift)
    theirs = layer.get_attn_mask(g.padded_height, g.padded_width, torch.float32, torch.device("cpu"))
    assert torch.equal(ref.shift_attention_mask(g), theirs)
    assert ref.shift_attention_mask(WindowGeometry(height, width, window, 0)) is None


def test_partition_and_reverse_are_inverse_and_match_hf_layout():
    x = torch.randn(2, 13, 10, 5, dtype=torch.float64)
    g = WindowGeometry(13, 10, 4, 2)
    windows = ref.window_partition(x, 4, 2)
    assert windows.shape == (2 * g.num_windows, 16, 5)
    assert torch.equal(ref.window_reverse(windows, 4, 13, 10, 2), x)
    rolled = torch.roll(torch.nn.functional.pad(x, (0, 0, 0, 2, 0, 3)), (-2, -2), (1, 2))
    assert torch.equal(windows, hf.window_partition(rolled, 4).reshape(-1, 16, 5))


def test_padded_tokens_see_the_qkv_bias():
    """Fused-op contract == official structure (zero-pad the normed map, then qkv): padded q/k/v = qkv bias."""
    torch.manual_seed(0)
    block = rm.SwinTransformerBlock(24, 3, 5, 2).double()
    x = torch.randn(2, 11, 7, 24, dtype=torch.float64)
    expected = block.attention_branch(x)
    attn = block.attn
    core = ref.shifted_window_attention(
        attn.qkv(x), 3, 5, 2, pad_qkv=attn.qkv.bias, bias=ref.relative_position_bias(attn.relative_position_bias_table, 5),
        scale=attn.scale)
    torch.testing.assert_close(attn.proj(core), expected, rtol=1e-12, atol=1e-12)


def test_drop_path_drops_whole_samples_and_rescales():
    torch.manual_seed(0)
    drop = rm.DropPath(0.25)
    x = torch.ones(4000, 3, 2)
    y = drop(x)
    per_sample = y.reshape(4000, -1)
    assert torch.all((per_sample == 0).all(1) | (per_sample == 1 / 0.75).all(1)), "samples must be all-or-nothing"
    dropped = (per_sample == 0).all(1).float().mean().item()
    assert abs(dropped - 0.25) < 0.03
    assert torch.equal(drop.eval()(x), x)


def test_attention_dropout_keeps_expectation():
    """Attention dropout zeroes probabilities and rescales the kept ones: the mean over many draws is the p=0 result."""
    torch.manual_seed(0)
    q, k, v = (torch.randn(1, 1, 9, 4, dtype=torch.float64) for _ in range(3))
    exact = ref.attention_core(q, k, v, scale=0.5)
    draws = torch.stack([ref.attention_core(q, k, v, scale=0.5, dropout_p=0.3) for _ in range(4000)])
    assert not torch.allclose(draws[0], exact)
    assert (draws.mean(0) - exact).abs().max() < 0.05
