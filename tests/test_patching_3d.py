"""swin_kernels.patch on the 3-D Swin families: torchvision's Swin3D (ShiftedWindowAttention3d), MONAI's SwinUNETR
with spatial_dims=3 (SwinTransformerBlock on volumes) and mmaction2's Video Swin (SwinTransformerBlock3D), each
patched copy against the library's own model.

fp64: outputs, the input gradient and every parameter gradient within 1e-10; fp32 within twice the unpatched fp32
model's own error (tests/family_checks.py); every block patched and fused once per forward. reference and cpp run
the small models below; triton (its interpreter on the CPU) a tiny model of each family. The volumes pad and clamp:

* torchvision, patch (2, 4, 4), window (2, 4, 6), an 8x40x20 clip: stage 1 is 4x10x5 (depth shifted by 1, rows
  padded to 12 and shifted by 2, columns 5 <= 6 clamped: window 2x4x5, no column shift, its 40 tokens biased with
  relative_position_index[:40, :40]), stage 2 4x5x3 (rows padded to 8, columns clamped to 3);
* MONAI, window (2, 7, 5) on 32x32x32: stages 16³ (rows padded to 21, columns to 20), 8³ (14, 10), 4³ (depth
  shifted, rows and columns clamped to 4: 32 tokens of a 70-token window), 2³ (every axis clamped); and SwinUNETR's
  default window 7 on the same volume (4³ and 2³ one clamped window);
* mmaction2, window (2, 7, 4) on an 8x24x36 clip: stage 1 4x6x9 (depth shifted, rows 6 <= 7 clamped, columns
  padded to 12 and shifted by 2), stage 2 4x3x5 (rows clamped to 3, columns padded to 8).

Clamping the leading (depth) axis alone keeps the bias of the table's centre (the first n tokens of the full window
are the clamped window); clamping rows or columns does not, which is what the cases exercise.
"""

from __future__ import annotations

import copy
import warnings

import pytest
import torch

import swin_kernels
from swin_kernels.backends import FallbackWarning
from swin_kernels.bias import relative_position_bias
from swin_kernels.patches import family_of, is_patched, unpatched_lookalikes

from family_checks import check_fp32, check_fp64, count_fused_calls, eval_mode, randomize, run

tv_video = pytest.importorskip("torchvision.models.video.swin_transformer", reason="torchvision is not installed")


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Small models gain nothing from threads on a shared CPU; results do not depend on it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ------------------------------------------------------------------------------------------------ models
def torchvision_model(window=(2, 4, 6), embed_dim=16, depths=(2, 2), heads=(2, 2), attention_dropout=0.0):
    torch.manual_seed(0)
    model = tv_video.SwinTransformer3d(patch_size=[2, 4, 4], embed_dim=embed_dim, depths=list(depths),
                                       num_heads=list(heads), window_size=list(window), stochastic_depth_prob=0.0,
                                       attention_dropout=attention_dropout, num_classes=5)
    return randomize(model)


def monai_encoder(window=(2, 7, 5), depths=(2, 2, 2, 2), **kwargs):
    """SwinUNETR's Swin encoder (every Swin block of the model; the convolutional decoder is not what is patched)."""
    nets = pytest.importorskip("monai.networks.nets", reason="monai is not installed")
    pytest.importorskip("einops", reason="einops is not installed (SwinUNETR rearranges with it)")
    torch.manual_seed(0)
    model = nets.SwinUNETR(in_channels=1, out_channels=2, feature_size=12, spatial_dims=3, depths=depths,
                           num_heads=(1, 1, 2, 2)[:len(depths)], window_size=window, **kwargs)
    return randomize(model).swinViT


def mmaction_model(window=(2, 7, 4), embed_dims=16, depths=(2, 2), heads=(2, 2), **kwargs):
    pytest.importorskip("mmaction", reason="mmaction2 is not installed (pyproject test-no-deps)")
    from tools.coverage_table import mmaction_swin_module

    swin = mmaction_swin_module()
    torch.manual_seed(0)
    model = swin.SwinTransformer3D(arch=dict(embed_dims=embed_dims, depths=list(depths), num_heads=list(heads)),
                                   patch_size=(2, 4, 4), window_size=window, drop_path_rate=0.0,
                                   out_indices=tuple(range(len(depths))), **kwargs)
    return randomize(model)


VOLUME = (1, 1, 32, 32, 32)
# name -> (model builder, input shape, blocks)
CASES = {
    "torchvision": (torchvision_model, (1, 3, 8, 40, 20), 4),
    "monai": (monai_encoder, VOLUME, 8),
    "monai_window7": (lambda: monai_encoder(window=7), VOLUME, 8),
    "mmaction": (mmaction_model, (1, 3, 8, 24, 36), 4),
}
# Tiny models for triton's interpreter. Video: one stage of window (2, 3, 5) over a 2x5x4 volume (depth 2 and
# columns 4 clamped, rows padded to 6 and shifted by 1). MONAI: four stages of window (2, 3, 5) over 8x12x10 (4x6x5:
# columns clamped, depth and rows shifted; then 2x3x3, 1x2x2, 1x1x1).
TINY_CLIP = (1, 3, 4, 20, 16)
TINY = {
    "torchvision": (lambda: torchvision_model(window=(2, 3, 5), embed_dim=8, depths=(2,), heads=(2,)), TINY_CLIP, 2),
    "monai": (lambda: monai_encoder(window=(2, 3, 5)), (1, 1, 8, 12, 10), 8),
    "mmaction": (lambda: mmaction_model(window=(2, 3, 5), embed_dims=8, depths=(2,), heads=(2,)), TINY_CLIP, 2),
}


def _input(shape, seed=2):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------------------- patched vs the library
@pytest.mark.parametrize("backend", ["reference", "cpp"])
@pytest.mark.parametrize("case", CASES)
def test_fp64(case, backend):
    build, shape, blocks = CASES[case]
    check_fp64(build(), _input(shape), backend, blocks)


@pytest.mark.parametrize("backend", ["reference", "cpp"])
@pytest.mark.parametrize("case", ["torchvision", "monai", "mmaction"])
def test_fp32(case, backend):
    build, shape, _ = CASES[case]
    check_fp32(build(), _input(shape), backend)


@pytest.mark.parametrize("family", TINY)
def test_triton_interpreter_fp64(family):
    pytest.importorskip("triton", reason="triton is not installed")
    build, shape, blocks = TINY[family]
    check_fp64(build(), _input(shape), "triton", blocks)


def test_triton_interpreter_fp32():
    pytest.importorskip("triton", reason="triton is not installed")
    build, shape, _ = TINY["torchvision"]
    check_fp32(build(), _input(shape), "triton")


# ---------------------------------------------------------------------------- what the families reproduce
def test_clamped_bias_is_the_index_prefix_not_the_centre():
    """torchvision, MONAI and mmaction2 bias a clamped window of n tokens with table[relative_position_index[:n,
    :n]]. Where rows or columns are clamped those are other entries than the clamped window's relative positions in
    the table's centre, so the fp64 cases above would fail with the centre; a clamped depth alone keeps them."""
    attn = torchvision_model(window=(4, 4, 6)).features[0][0].attn
    table = attn.relative_position_bias_table
    for window, same in (((3, 4, 6), True), ((4, 4, 5), False), ((4, 3, 6), False), ((2, 4, 5), False)):
        n = window[0] * window[1] * window[2]
        prefix = attn.get_relative_position_bias(list(window))[0]
        centre = relative_position_bias(table, window, table_window=(4, 4, 6))
        assert prefix.shape == centre.shape == (2, n, n)
        assert ((prefix - centre).abs().max() == 0) == same, window


def test_volumes_of_another_depth_keep_the_fused_path():
    """The shift mask a MONAI layer hands its blocks is recognised per volume size (depth included): a second
    volume with the same rows and columns but another depth is fused too, and exact."""
    model = eval_mode(monai_encoder(window=(2, 3, 5)).double())
    patched = swin_kernels.patch(copy.deepcopy(model), backend="cpp")
    for depth in (8, 12, 8):
        x = _input((1, 1, depth, 12, 10)).double()
        with torch.no_grad():
            expected = model(x)
            with count_fused_calls() as calls:
                got = patched(x)
        assert len(calls) == 8, (depth, len(calls))
        assert max((a - b).abs().max().item() for a, b in zip(got, expected)) <= 1e-10


def _checkpointed_fp64(model, x, blocks: int) -> None:
    """fp64 outputs and gradients of a training-mode forward and backward, patched vs unpatched, where every block
    checkpoints self.forward_part1 (recomputed in the backward: two fused calls per block)."""
    model = model.double()
    model.train()  # OpenMMLab's train() returns None
    x = x.double()
    expected = run(model, x)
    patched = swin_kernels.patch(copy.deepcopy(model), backend="cpp")
    with count_fused_calls() as calls:
        got = run(patched, x)
    assert len(calls) == 2 * blocks
    pairs = list(zip(got[0], expected[0])) + [(got[1], expected[1])] + list(zip(got[2], expected[2]))
    assert all((a is None) == (b is None) for a, b in pairs)
    assert max((a - b).abs().max().item() for a, b in pairs if a is not None) <= 1e-10


def test_monai_gradient_checkpointing():
    """MONAI's use_checkpoint runs self.forward_part1 under torch.utils.checkpoint: the patched method, recomputed
    in the backward, gives MONAI's gradients."""
    _checkpointed_fp64(monai_encoder(window=(2, 3, 5), use_checkpoint=True), _input((1, 1, 8, 12, 10)), 8)


def test_mmaction_with_cp():
    """mmaction2's with_cp checkpoints self.forward_part1 the same way."""
    _checkpointed_fp64(mmaction_model(window=(2, 3, 5), embed_dims=8, depths=(2,), heads=(2,), with_cp=True),
                       _input(TINY_CLIP), 2)


def test_attention_dropout_in_training_on_a_backend_without_it():
    """A named backend without attention dropout (cpp) runs torchvision's own forward in training, with a warning;
    the reference, which has dropout, stays fused."""
    model = torchvision_model(window=(2, 3, 5), embed_dim=8, depths=(2,), heads=(2,), attention_dropout=0.1).train()
    x = _input(TINY_CLIP)
    cpp = swin_kernels.patch(copy.deepcopy(model), backend="cpp")
    with warnings.catch_warnings(record=True) as caught, count_fused_calls() as calls:
        warnings.simplefilter("always")
        cpp(x)
    assert not calls and any(issubclass(w.category, FallbackWarning) and "attention dropout" in str(w.message)
                             for w in caught)
    with count_fused_calls() as calls:
        swin_kernels.patch(copy.deepcopy(model), backend="reference")(x)
    assert len(calls) == 2


# ------------------------------------------------------------------------------- whole models, unpatch
def _patch_quietly(model, backend="cpp"):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        swin_kernels.patch(model, backend=backend)
    return [str(w.message) for w in caught]


def test_torchvision_swin3d_t_every_block_patched():
    """swin3d_t itself (window 8x7x7, 12 blocks): every block's attention is patched, nothing is left unnamed."""
    model = tv_video.swin3d_t(num_classes=4)
    assert _patch_quietly(model) == []
    attentions = [m for m in model.modules() if type(m).__name__ == "ShiftedWindowAttention3d"]
    assert len(attentions) == 12 and all(is_patched(m) for m in attentions)
    assert unpatched_lookalikes(model) == []
    assert "12 block(s): runs on cpp" in str(swin_kernels.explain(model))


def test_swinunetr_3d_every_block_patched():
    nets = pytest.importorskip("monai.networks.nets", reason="monai is not installed")
    pytest.importorskip("einops", reason="einops is not installed")
    model = nets.SwinUNETR(in_channels=1, out_channels=2, feature_size=24, spatial_dims=3)
    assert _patch_quietly(model) == []
    blocks = [m for m in model.modules() if type(m).__name__ == "SwinTransformerBlock"]
    assert len(blocks) == 8 and all(is_patched(b) for b in blocks)
    assert "8 block(s): runs on cpp" in str(swin_kernels.explain(model))


@pytest.mark.parametrize("case", ["torchvision", "monai", "mmaction"])
def test_unpatch_restores(case):
    build, shape, blocks = TINY[case]
    model = eval_mode(build())
    x = _input(shape)
    with torch.no_grad():
        expected = model(x)
    assert sum(family_of(m) is not None for m in model.modules()) == blocks
    swin_kernels.patch(model, backend="reference")
    assert sum(is_patched(m) for m in model.modules()) == blocks
    swin_kernels.unpatch(model)
    assert not any(is_patched(m) for m in model.modules())
    with torch.no_grad(), count_fused_calls() as calls:
        got = model(x)
    assert not calls
    for a, b in zip(got if isinstance(got, (tuple, list)) else [got],
                    expected if isinstance(expected, (tuple, list)) else [expected]):
        assert torch.equal(a, b)


def test_torch_compile_fullgraph():
    """A patched Video Swin compiles in one graph (aot_eager: no code generation) and gives the eager answer."""
    build, shape, _ = TINY["torchvision"]
    model = eval_mode(build())
    x = _input(shape)
    with torch.no_grad():
        expected = model(x)
    torch._dynamo.reset()
    compiled = torch.compile(swin_kernels.patch(copy.deepcopy(model), backend="cpp"), backend="aot_eager",
                             fullgraph=True)
    with torch.no_grad():
        got = compiled(x)
    assert (got - expected).abs().max().item() <= 1e-5 * expected.abs().max().item()
