"""The PyTorch reference against Hugging Face transformers' Swin, an independent implementation.

Weights are copied from HF into the reference; outputs, input gradients and parameter gradients must agree to
1e-10 (fp64) and 1e-5 (fp32) in norm-wise relative error, on padded, H != W, shifted, unshifted and clamped maps
(per parameter for blocks and stages, the whole parameter gradient for models).
"""

import pytest
import torch
from transformers.models.swin import modeling_swin as hf

from swin_kernels import reference_model as rm

from hf_swin import (block_grad_pairs, config, load_block, load_model, load_stage, randomize_,
                     reference_model_for, relative_error)

TOLERANCE = {torch.float64: 1e-10, torch.float32: 1e-5}
LARGEST_ERROR_SEEN = {}  # kind -> largest relative error, printed at the end of the module


def record(kind, dtype, error):
    key = f"{kind} {str(dtype).replace('torch.', '')}"
    LARGEST_ERROR_SEEN[key] = max(LARGEST_ERROR_SEEN.get(key, 0.0), error)
    assert error <= TOLERANCE[dtype], f"{key}: relative error {error:.3e}"


@pytest.fixture(scope="module", autouse=True)
def report_largest_errors():
    yield
    print("\nlargest relative error against HF transformers:")
    for key, value in sorted(LARGEST_ERROR_SEEN.items()):
        print(f"  {key:<22} {value:.2e}")


# (H, W, window, shift, window HF is built with). HF 5.x keeps the config-size bias table when it clamps a window
# at run time (it then fails for maps smaller than the window), so a clamped block is compared with an HF block
# built at the clamped size: the official block does exactly that at construction.
BLOCK_CASES = [
    (8, 8, 4, 0, 4),      # unshifted, divisible
    (8, 8, 4, 2, 4),      # shifted, divisible
    (13, 17, 4, 2, 4),    # padded both ways, H != W
    (9, 6, 3, 1, 3),      # odd window
    (14, 21, 7, 3, 7),    # Swin-T window, padded width
    (7, 9, 7, 3, 7),      # clamping: min(H, W) == window -> shift 0
    (5, 8, 7, 3, 5),      # clamping: map smaller than the window -> window 5, shift 0 (centre of the 13x13 table)
]


def run_block(module, x_hf_layout, height, width, is_hf):
    if is_hf:
        return module(x_hf_layout, (height, width))[0]
    b, _, c = x_hf_layout.shape
    return module(x_hf_layout.view(b, height, width, c)).reshape(b, height * width, -1)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("height,width,window,shift,hf_window", BLOCK_CASES)
def test_block_matches_hf(height, width, window, shift, hf_window, dtype):
    dim, heads, batch = 16, 2, 3
    hf_shift = shift if hf_window == window else 0
    layer = hf.SwinLayer(config(window_size=hf_window), dim, (height, width), heads, shift_size=hf_shift)
    randomize_(layer, seed=height * 100 + width).to(dtype).eval()
    block = rm.SwinTransformerBlock(dim, heads, window, shift).to(dtype).eval()
    load_block(block, layer)

    gen = torch.Generator().manual_seed(7)
    x = torch.randn(batch, height * width, dim, generator=gen, dtype=torch.float64).to(dtype)
    grad = torch.randn(batch, height * width, dim, generator=gen, dtype=torch.float64).to(dtype)
    x_hf, x_ref = x.clone().requires_grad_(), x.clone().requires_grad_()
    out_hf, out_ref = run_block(layer, x_hf, height, width, True), run_block(block, x_ref, height, width, False)
    record("block output", dtype, relative_error(out_ref, out_hf))
    out_hf.backward(grad)
    out_ref.backward(grad)
    record("block input grad", dtype, relative_error(x_ref.grad, x_hf.grad))
    for ours, theirs in block_grad_pairs(layer, block):
        record("block param grad", dtype, relative_error(ours, theirs))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("height,width,downsample", [(12, 12, True), (11, 14, True), (9, 7, False)])
def test_stage_matches_hf(height, width, downsample, dtype):
    dim, heads, depth, window = 16, 2, 2, 4
    hf_stage = hf.SwinStage(config(window_size=window), dim, (height, width), depth, heads, drop_path=[0.0] * depth,
                            downsample=hf.SwinPatchMerging if downsample else None)
    randomize_(hf_stage, seed=1).to(dtype).eval()
    stage = rm.SwinStage(dim, depth, heads, window, downsample=downsample).to(dtype).eval()
    load_stage(stage, hf_stage)

    gen = torch.Generator().manual_seed(3)
    x = torch.randn(2, height * width, dim, generator=gen, dtype=torch.float64).to(dtype)
    x_hf, x_ref = x.clone().requires_grad_(), x.clone().requires_grad_()
    out_hf = hf_stage(x_hf, (height, width))[0]
    out_ref = stage(x_ref.view(2, height, width, dim))
    out_ref = out_ref.reshape(2, -1, out_ref.shape[-1])
    record("stage output", dtype, relative_error(out_ref, out_hf))
    grad = torch.randn(out_hf.shape, generator=gen, dtype=torch.float64).to(dtype)
    out_hf.backward(grad)
    out_ref.backward(grad)
    record("stage input grad", dtype, relative_error(x_ref.grad, x_hf.grad))
    for block, layer in zip(stage.blocks, hf_stage.blocks):
        for ours, theirs in block_grad_pairs(layer, block):
            record("stage param grad", dtype, relative_error(ours, theirs))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("image_hw", [(60, 52), (64, 64)])
def test_model_matches_hf(image_hw, dtype):
    """Whole SwinForImageClassification: patch grid 15x13 -> 8x7 -> 4x4 pads every stage and clamps the last."""
    from transformers import SwinForImageClassification

    cfg = config(image_size=64, depths=[2, 2, 2], num_heads=[2, 2, 4], window_size=4, num_labels=5)
    model = randomize_(SwinForImageClassification(cfg), seed=2).to(dtype).eval()
    ours = reference_model_for(cfg, num_classes=5).to(dtype).eval()
    load_model(ours, model.swin, model.classifier)

    gen = torch.Generator().manual_seed(5)
    images = torch.randn(2, 3, *image_hw, generator=gen, dtype=torch.float64).to(dtype)
    images_hf, images_ref = images.clone().requires_grad_(), images.clone().requires_grad_()
    logits_hf = model(pixel_values=images_hf).logits
    logits_ref = ours(images_ref)
    record("model logits", dtype, relative_error(logits_ref, logits_hf))
    features_hf = model.swin(pixel_values=images).last_hidden_state
    features_ref = ours.forward_features(images)
    record("model features", dtype, relative_error(features_ref.reshape(features_hf.shape), features_hf))

    grad = torch.randn(logits_hf.shape, generator=gen, dtype=torch.float64).to(dtype)
    logits_hf.backward(grad)
    logits_ref.backward(grad)
    record("model input grad", dtype, relative_error(images_ref.grad, images_hf.grad))
    # The model's parameter gradient as one vector (blocks and patch embedding): a per-tensor comparison of a
    # bias-table gradient deep in the model measures fp32 cancellation more than semantics (fp64 covers those).
    pairs = [pair for stage, hf_stage in zip(ours.stages, model.swin.encoder.layers)
             for block, layer in zip(stage.blocks, hf_stage.blocks) for pair in block_grad_pairs(layer, block)]
    pairs.append((ours.patch_embed.weight.grad, model.swin.embeddings.patch_embeddings.projection.weight.grad))
    mine = torch.cat([a.reshape(-1) for a, _ in pairs])
    theirs = torch.cat([b.reshape(-1) for _, b in pairs])
    record("model param grad", dtype, relative_error(mine, theirs))
