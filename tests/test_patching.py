"""swin_kernels.patch on whole Hugging Face Swin-family models: nothing may change but the path the attention takes.

Each case patches a copy of a randomly initialised model and compares it with the unpatched original (an
independent implementation): outputs, the input gradient and every parameter gradient, fp64 <= 1e-10 and
fp32 <= 1e-5 relative, for every backend that can run here.
"""

from __future__ import annotations

import copy
import io
import warnings

import pytest
import torch
import transformers as tf

import swin_kernels
from swin_kernels import functional
from swin_kernels.backends import BACKEND_NAMES
from swin_kernels.patches import is_patched

from swin_family_models import (
    ALL_CASES, EMULATED_BACKENDS, IMAGE, NATIVE_BACKENDS, ModelCase, assert_close, assert_grads_close, compare_with_unpatched,
    output_tensors, randomize_, relative_error, run, swin_config,
)

BY_NAME = {case.name: case for case in ALL_CASES}
# For backends run by an emulator: two blocks (unshifted, shifted) on a padded 9x7 map.
ONE_STAGE = ModelCase("one-stage SwinForImageClassification",
                      lambda: tf.SwinForImageClassification(swin_config(depths=[2], num_heads=[2], num_labels=3)),
                      image=(36, 28))


def count_fused_calls(monkeypatch) -> list:
    calls = []
    real = functional.attention_on_geometry

    def counting(*args, **kwargs):
        calls.append(kwargs.get("backend"))
        return real(*args, **kwargs)

    monkeypatch.setattr(functional, "attention_on_geometry", counting)
    return calls


def swin_blocks(model):
    return [m for m in model.modules() if type(m).__name__.endswith(("SwinLayer", "Swinv2Layer"))]


# ------------------------------------------------------------------------------------------------- exactness
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("backend", NATIVE_BACKENDS)
@pytest.mark.parametrize("case", ALL_CASES, ids=str)
def test_patched_model_matches_unpatched(case, backend, dtype):
    compare_with_unpatched(case, backend, dtype)


@pytest.mark.parametrize("backend", EMULATED_BACKENDS or [pytest.param(None, marks=pytest.mark.skip(
    reason="no backend runs in an emulator here (triton needs a GPU or TRITON_INTERPRET=1)"))])
def test_patched_model_matches_unpatched_emulated_backend(backend):
    compare_with_unpatched(ONE_STAGE, backend, torch.float32)


@pytest.mark.parametrize("case", ALL_CASES, ids=str)
def test_every_block_runs_the_fused_op_once(case, monkeypatch):
    model = case.model(torch.float32).eval()
    swin_kernels.patch(model, backend="reference")
    calls = count_fused_calls(monkeypatch)
    with torch.no_grad():
        model(**case.inputs(torch.float32))
    blocks = swin_blocks(model)
    assert blocks and all(is_patched(b) for b in blocks)
    assert calls == ["reference"] * len(blocks)


def test_state_dict_and_parameters_are_unchanged():
    case = BY_NAME["SwinForImageClassification"]
    model = case.model(torch.float32)
    before = {k: (v.data_ptr(), v.shape) for k, v in model.state_dict(keep_vars=True).items()}
    parameters = list(model.parameters())
    swin_kernels.patch(model)
    after = {k: (v.data_ptr(), v.shape) for k, v in model.state_dict(keep_vars=True).items()}
    assert after == before
    assert all(a is b for a, b in zip(model.parameters(), parameters, strict=True))
    model.load_state_dict(case.model(torch.float32, seed=3).state_dict())  # loads into a patched model


@pytest.mark.parametrize("case", [BY_NAME["SwinModel"], BY_NAME["DonutSwinModel"], BY_NAME["Swinv2Model"]], ids=str)
def test_unpatch_restores_the_original_forward(case):
    model = case.model(torch.float32).eval()
    inputs = case.inputs(torch.float32)
    with torch.no_grad():
        expected = output_tensors(copy.deepcopy(model)(**inputs))
        swin_kernels.patch(model, backend="reference")
        assert all(is_patched(b) for b in swin_blocks(model))
        assert swin_kernels.unpatch(model) is model
        assert not any(is_patched(b) or "forward" in vars(b) for b in swin_blocks(model))
        actual = output_tensors(model(**inputs))
    for a, e in zip(actual, expected, strict=True):
        assert torch.equal(a, e)  # the original code runs again: bit for bit


def test_patch_twice_switches_the_backend(monkeypatch):
    case = BY_NAME["SwinModel"]
    model = swin_kernels.patch(case.model(torch.float32).eval(), backend="reference")
    swin_kernels.patch(model, backend="auto")
    calls = count_fused_calls(monkeypatch)
    with torch.no_grad():
        model(**case.inputs(torch.float32))
    assert calls and set(calls) == {"auto"}


def test_swinv2_at_the_largest_logit_scale():
    """transformers adds V2's shift mask twice (-200), the fused op once (-100, as the official code): the results
    still agree when every head uses the largest logit scale (100), where masked pairs weigh the most."""
    case = BY_NAME["Swinv2Model"]
    model = case.model(torch.float64).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("logit_scale"):
                p.fill_(torch.log(torch.tensor(100.0)).item())
    patched = swin_kernels.patch(copy.deepcopy(model), backend="reference")
    inputs = case.inputs(torch.float64)
    with torch.no_grad():
        assert_close(output_tensors(patched(**inputs)), output_tensors(model(**inputs)), torch.float64, "V2")


# --------------------------------------------------------------------------------------- window clamping
def test_clamping_leaves_no_state_behind():
    """SwinLayer clamps by changing its own window and shift for good; the patched block clamps per call: each
    image gives what a fresh unpatched model gives, and the blocks keep their attributes."""
    case = BY_NAME["SwinModel"]
    model = case.model(torch.float64).eval()
    patched = swin_kernels.patch(copy.deepcopy(model), backend="reference")
    before = [(b.window_size, b.shift_size) for b in swin_blocks(patched)]
    with torch.no_grad():
        for image in [(64, 64), IMAGE, (96, 80)]:  # 64x64: last map 4x4 -> clamped; the later calls are not
            inputs = case.inputs(torch.float64, image=image)
            expected = output_tensors(copy.deepcopy(model)(**inputs))
            assert_close(output_tensors(patched(**inputs)), expected, torch.float64, image)
    assert [(b.window_size, b.shift_size) for b in swin_blocks(patched)] == before


@pytest.mark.parametrize("backend", NATIVE_BACKENDS)
def test_block_smaller_than_window_reads_the_table_centre(backend):
    """HF raises when a map is smaller than the window (its bias table keeps the configured window); the patched
    block runs the official clamped block: window = min(H, W), no shift, the centre of the table. Compared with
    an HF block built at the clamped window that holds that centre."""
    dim, heads, small, big = 16, 2, 3, 5
    gen = torch.Generator().manual_seed(0)
    layer = randomize_(tf.models.swin.modeling_swin.SwinLayer(
        swin_config(window_size=big), dim, (8, 8), heads, shift_size=2)).double().eval()
    x = torch.randn(2, small * 7, dim, generator=gen, dtype=torch.float64)
    with pytest.raises(RuntimeError):
        copy.deepcopy(layer)(x, (small, 7))
    expected_layer = tf.models.swin.modeling_swin.SwinLayer(swin_config(window_size=small), dim, (8, 8), heads)
    state = layer.state_dict()
    key = "attention.relative_position_bias.relative_position_bias_table"
    side = 2 * big - 1
    centre = state[key].view(side, side, heads)[big - small:big + small - 1, big - small:big + small - 1]
    state[key] = centre.reshape(-1, heads)
    expected_layer.load_state_dict(state)
    expected_layer = expected_layer.double().eval()
    swin_kernels.patch(layer, backend=backend)
    actual = layer(x, (small, 7))[0]
    assert (layer.window_size, layer.shift_size) == (big, 2)  # clamped per call, the block unchanged
    assert_close([actual], [expected_layer(x, (small, 7))[0]], torch.float64, "clamped block")


# ------------------------------------------------------------------------------------------ training paths
def test_gradient_checkpointing_is_kept(monkeypatch):
    case = BY_NAME["SwinForImageClassification"]
    model = case.model(torch.float64).train()
    model.activation_checkpointing_enable()
    patched = swin_kernels.patch(copy.deepcopy(model), backend="reference")
    calls = count_fused_calls(monkeypatch)
    original_calls = []
    for block in swin_blocks(model):
        block.attention.register_forward_hook(lambda *args: original_calls.append(1))
    inputs = case.inputs(torch.float64)
    expected, expected_grads = run(model, inputs, grad=True)
    actual, grads = run(patched, inputs, grad=True)
    # blocks are recomputed in the backward exactly as often as the original recomputes them
    assert len(calls) == len(original_calls) > len(swin_blocks(patched))
    assert_close(actual, expected, torch.float64, "outputs")
    assert_grads_close(grads, expected_grads, torch.float64, "checkpointed")


def test_attention_dropout_is_applied_in_training_only():
    config = swin_config(attention_probs_dropout_prob=0.5)
    model = randomize_(tf.SwinModel(config))
    patched = swin_kernels.patch(copy.deepcopy(model))
    inputs = BY_NAME["SwinModel"].inputs(torch.float32)
    with torch.no_grad():
        train_out = patched.train()(**inputs).last_hidden_state
        eval_out = patched.eval()(**inputs).last_hidden_state
        expected = model.eval()(**inputs).last_hidden_state
    assert relative_error(eval_out, expected) <= 1e-5
    assert relative_error(train_out, expected) > 1e-2


# ------------------------------------------------------------------------------ attention weights requested
@pytest.mark.parametrize("case", ["SwinModel", "DonutSwinModel", "Swinv2Model"])
def test_attention_weights_come_from_the_original_path(case):
    case = BY_NAME[case]
    model = case.model(torch.float32).eval()
    if isinstance(model, tf.SwinModel):
        model = randomize_(tf.SwinModel(swin_config(attn_implementation="eager")))  # sdpa returns no weights
    patched = swin_kernels.patch(copy.deepcopy(model), backend="reference")
    inputs = case.inputs(torch.float32)
    with torch.no_grad():
        expected = model(**inputs, output_attentions=True)
        actual = patched(**inputs, output_attentions=True)
    assert len(actual.attentions) == len(expected.attentions) > 0
    assert_close(output_tensors(actual), output_tensors(expected), torch.float32, "outputs with attentions")


# ------------------------------------------------------------------------------------ weights that change
def test_inference_follows_weight_changes():
    case = BY_NAME["SwinModel"]
    model = case.model(torch.float32).eval()
    patched = swin_kernels.patch(copy.deepcopy(model), backend="reference")
    inputs = case.inputs(torch.float32)

    def check(what):
        with torch.no_grad():
            assert_close(output_tensors(patched(**inputs)), output_tensors(model(**inputs)), torch.float32, what)

    check("first call")
    with torch.no_grad():
        for m in (model, patched):  # in-place update (as an optimizer step does)
            for name, p in m.named_parameters():
                if "k_proj" in name or "q_proj.bias" in name:
                    p.mul_(1.5)
    check("after an in-place update")
    for m in (model, patched):  # storage replaced, values rounded
        m.half().float()
    check("after a dtype round trip")
    new_state = case.model(torch.float32, seed=5).state_dict()
    for m in (model, patched):
        m.load_state_dict(new_state, assign=True)
    check("after load_state_dict(assign=True)")


def test_copied_and_pickled_models_stay_patched(monkeypatch):
    case = BY_NAME["SwinModel"]
    model = case.model(torch.float32).eval()
    patched = swin_kernels.patch(copy.deepcopy(model), backend="reference")
    inputs = case.inputs(torch.float32)
    buffer = io.BytesIO()
    torch.save(patched, buffer)
    buffer.seek(0)
    for restored in (copy.deepcopy(patched), torch.load(buffer, weights_only=False)):
        calls = count_fused_calls(monkeypatch)
        with torch.no_grad():
            actual = output_tensors(restored(**inputs))
        assert len(calls) == len(swin_blocks(restored))
        assert all(b.forward.module is b for b in swin_blocks(restored))
        with torch.no_grad():
            assert_close(actual, output_tensors(model(**inputs)), torch.float32, "restored")


def test_frozen_weights_still_get_input_gradients():
    case = BY_NAME["SwinForImageClassification"]
    model = case.model(torch.float64)
    for p in model.swin.parameters():
        p.requires_grad_(False)
    patched = swin_kernels.patch(copy.deepcopy(model), backend="reference")
    inputs = case.inputs(torch.float64)
    expected, expected_grads = run(model, inputs, grad=True)
    actual, grads = run(patched, inputs, grad=True)
    assert_close(actual, expected, torch.float64, "outputs")
    assert_grads_close(grads, expected_grads, torch.float64, "frozen encoder")


# ------------------------------------------------------------------------------------ unsupported modules
def _warnings_of(model):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        swin_kernels.patch(model)
    return [str(w.message) for w in caught]


def test_model_without_swin_blocks_warns():
    messages = _warnings_of(torch.nn.Sequential(torch.nn.Linear(4, 4)))
    assert len(messages) == 1 and "found no Swin block in Sequential" in messages[0]


def test_blocks_with_hooks_on_bypassed_modules_are_left_alone_with_a_warning():
    model = BY_NAME["SwinModel"].model(torch.float32)
    blocks = swin_blocks(model)
    blocks[1].attention.register_forward_hook(lambda *args: None)
    blocks[2].attention.q_proj.register_forward_hook(lambda *args: None)  # called by the fused path too
    messages = _warnings_of(model)
    assert len(messages) == 1
    assert "1 SwinLayer block(s) unchanged (encoder.layers.0.blocks.1)" in messages[0]
    assert "attention has hooks" in messages[0]
    assert [is_patched(b) for b in blocks] == [True, False] + [True] * (len(blocks) - 2)


def test_replaced_linear_is_patched_and_called():
    class LoraLikeLinear(torch.nn.Linear):
        pass

    model = BY_NAME["DonutSwinModel"].model(torch.float32)
    block = swin_blocks(model)[0]
    old = block.attention.self.value
    block.attention.self.value = LoraLikeLinear(old.in_features, old.out_features)
    assert _warnings_of(model) == []
    assert is_patched(block)


def test_unknown_swin_like_blocks_are_left_alone_with_a_warning():
    class MySwinLayer(tf.models.swin.modeling_swin.SwinLayer):
        """A user subclass may have changed anything; only the exact HF classes are patched."""

    model = BY_NAME["SwinModel"].model(torch.float32)
    stage = model.encoder.layers[0]
    old = stage.blocks[0]
    stage.blocks[0] = MySwinLayer(old.attention.config, 16, (16, 16), 2)
    swin2sr = tf.Swin2SRModel(tf.Swin2SRConfig(image_size=16, embed_dim=8, depths=[2], num_heads=[2], window_size=4))
    messages = _warnings_of(torch.nn.ModuleDict({"swin": model, "sr": swin2sr}))
    assert any("1 MySwinLayer block(s) unchanged (swin.encoder.layers.0.blocks.0): not a Swin block class" in m
               for m in messages)
    assert not any("Swin2SRLayer" in m for m in messages)  # a family of its own since (patches/hf_swinv2.py)
    assert all(is_patched(b) for b in swin2sr.modules() if type(b).__name__ == "Swin2SRLayer")
    assert sum(is_patched(b) for b in swin_blocks(model)) == len(swin_blocks(model)) - 1


def test_patch_rejects_unknown_backend_names():
    with pytest.raises(ValueError, match="unknown backend 'fast'"):
        swin_kernels.patch(torch.nn.Linear(2, 2), backend="fast")


def test_patch_rejects_a_backend_that_cannot_run_here():
    missing = [name for name in BACKEND_NAMES if name not in swin_kernels.available_backends()]
    if not missing:
        pytest.skip("every backend can run on this machine")
    model = BY_NAME["SwinModel"].model(torch.float32)
    with pytest.raises(swin_kernels.BackendUnavailableError, match=f"^{missing[0]}: "):
        swin_kernels.patch(model, backend=missing[0])
    assert not any(is_patched(b) for b in swin_blocks(model))
