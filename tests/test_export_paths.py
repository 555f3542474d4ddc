"""Patched models through the other export paths: ONNX (dynamo exporter, onnxruntime), torch.fx feature extraction
(torchvision's create_feature_extractor, timm's FX features), TorchScript (script refused, trace followed).

Every result is compared with the unpatched model itself in fp32 (a patched model computes the same function in
another order: within 1e-5 of the output's scale). Models are tiny: one or two stages, one or two heads, padded
and shifted maps.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
import transformers as tf

import swin_kernels
from swin_kernels.patches.tracing import ScriptingPatchedModelError, call_patched
from swin_family_models import randomize_
from timm_torchvision_models import TINY, timm_model

onnxruntime = pytest.importorskip("onnxruntime", reason="onnxruntime is in the test dependencies (pyproject)")
pytest.importorskip("onnxscript", reason="onnxscript is in the test dependencies (pyproject)")

FP32_TOLERANCE = 1e-5


def _hf_tiny() -> torch.nn.Module:
    # 20x24 image -> 5x6 map, window 3: padded to 6x6, shifted blocks
    config = tf.SwinConfig(image_size=32, patch_size=4, embed_dim=8, depths=[2], num_heads=[1], window_size=3,
                           num_labels=5, attn_implementation="sdpa")
    return randomize_(tf.SwinForImageClassification(config))


def _model_and_input(name: str):
    if name == "HF Swin":
        return _hf_tiny().eval(), torch.randn(1, 3, 20, 24, generator=torch.Generator().manual_seed(1))
    case = TINY[name]
    return case.model(torch.float32).eval(), case.inputs(torch.float32, batch=1)


def _logits(output) -> torch.Tensor:
    return output.logits if hasattr(output, "logits") else output


def _assert_close(actual, expected, what: str) -> None:
    actual, expected = torch.as_tensor(actual), torch.as_tensor(expected)
    assert actual.shape == expected.shape, what
    error = (actual - expected).abs().max().item() / max(expected.abs().max().item(), 1e-30)
    assert error <= FP32_TOLERANCE, f"{what}: relative error {error:.2e}"


def _run_onnx(program, x: torch.Tensor) -> np.ndarray:
    session = onnxruntime.InferenceSession(program.model_proto.SerializeToString(),
                                           providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]


def _custom_domains(program) -> set[str]:
    return {node.domain for node in program.model_proto.graph.node if node.domain not in ("", "ai.onnx")}


# ----------------------------------------------------------------------------------------------------- ONNX
@pytest.mark.parametrize("name", ["HF Swin", "timm V1", "timm V2", "torchvision V1", "torchvision V2"])
def test_onnx_export_of_patched_model_matches_unpatched(name):
    model, x = _model_and_input(name)
    with torch.no_grad():
        expected = _logits(model(x))
    swin_kernels.patch(model)
    program = torch.onnx.export(model, (x,), dynamo=True, verbose=False)  # no translation table needed
    assert not _custom_domains(program), "the translation uses standard ONNX operators only"
    _assert_close(_run_onnx(program, x), expected, f"{name}: onnxruntime against the unpatched model")


def test_onnx_export_with_dynamic_batch():
    """The translation's index maps fix H and W; the batch stays dynamic (exported at 2, run at 3)."""
    case = TINY["torchvision V1"]
    model = case.model(torch.float32).eval()
    x, x3 = case.inputs(torch.float32, batch=2), case.inputs(torch.float32, batch=3, seed=5)
    with torch.no_grad():
        expected = model(x3)
    swin_kernels.patch(model)
    program = torch.onnx.export(model, (x,), dynamic_shapes=({0: torch.export.Dim("batch")},), dynamo=True,
                                verbose=False)
    _assert_close(_run_onnx(program, x3), expected, "batch 3 through a graph exported at batch 2")


def test_onnx_export_of_triton_ops():
    """A model patched for the Triton backend (its ops traced, not run) exports and matches."""
    if "triton" not in swin_kernels.available_backends():
        pytest.skip("triton is not available here")
    model, x = _model_and_input("timm V1")
    with torch.no_grad():
        expected = model(x)
    swin_kernels.patch(model, backend="triton")
    program = torch.onnx.export(model, (x,), dynamo=True, verbose=False)
    _assert_close(_run_onnx(program, x), expected, "triton-patched timm V1 in onnxruntime")


def test_translation_table_exports_a_program_holding_the_fused_ops():
    """torch.export keeps the fused ops; the public table translates that program (attention, partition,
    reverse)."""
    if "cpp" not in swin_kernels.available_backends():
        pytest.skip("the compiled extension is not built here")

    class Branch(torch.nn.Module):
        def forward(self, qkv, x):
            out = swin_kernels.shifted_window_attention(qkv, 2, (3, 4), (1, 2), pad_qkv=qkv[0, 0, 0],
                                                        backend="cpp")
            windows = swin_kernels.window_partition(x, (3, 4), (1, 2), backend="cpp", roll_before_pad=True)
            back = swin_kernels.window_reverse(windows * 2, (3, 4), 5, 7, (1, 2), backend="cpp",
                                               roll_before_pad=True)
            return out, back

    gen = torch.Generator().manual_seed(0)
    qkv, x = torch.randn(2, 5, 7, 24, generator=gen), torch.randn(2, 5, 7, 4, generator=gen)
    program = torch.export.export(Branch(), (qkv, x))
    targets = {str(node.target) for node in program.graph.nodes}
    assert {"swin_kernels.window_attention_fwd.default", "swin_kernels.window_partition.default",
            "swin_kernels.window_reverse.default"} <= targets
    onnx_program = torch.onnx.export(program, (qkv, x), dynamo=True, verbose=False,
                                     custom_translation_table=swin_kernels.onnx_translation_table())
    session = onnxruntime.InferenceSession(onnx_program.model_proto.SerializeToString(),
                                           providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    out, back = session.run(None, dict(zip(names, (qkv.numpy(), x.numpy()))))
    expected = swin_kernels.shifted_window_attention(qkv, 2, (3, 4), (1, 2), pad_qkv=qkv[0, 0, 0],
                                                     backend="reference")
    _assert_close(out, expected, "attention translation")
    _assert_close(back, 2 * x, "partition then reverse translation")


def test_legacy_onnx_exporter_says_what_to_use():
    model, x = _model_and_input("torchvision V1")
    swin_kernels.patch(model)
    with pytest.raises(Exception) as error:
        torch.onnx.export(model, (x,), io.BytesIO(), dynamo=False)
    message = str(error.value)
    assert "dynamo=True" in message and "unpatch" in message, message


# ------------------------------------------------------------------------------------------------------ fx
def _leaf_nodes(graph: torch.fx.Graph) -> int:
    return sum(node.op == "call_function" and node.target is call_patched for node in graph.nodes)


@pytest.mark.parametrize("name", ["torchvision V1", "torchvision V2"])
def test_torchvision_create_feature_extractor(name):
    from torchvision.models.feature_extraction import create_feature_extractor

    model, x = _model_and_input(name)
    nodes = {"features.1": "stage", "norm": "norm"}
    with torch.no_grad():
        expected = create_feature_extractor(model, nodes)(x)
    swin_kernels.patch(model)
    extractor = create_feature_extractor(model, nodes)
    assert _leaf_nodes(extractor.graph) == 2, "one fused node per patched block"
    with torch.no_grad():
        actual = extractor(x)
    for key in nodes.values():
        _assert_close(actual[key], expected[key], f"{name} feature {key}")


@pytest.mark.parametrize("family", ["timm V1", "timm V2"])
def test_timm_fx_features(family):
    """timm's FX feature extraction (FeatureGraphNet, what features_only with feature_cls="fx" builds) of a
    patched model: one fused node per block, the unpatched model's features."""
    from timm.models import FeatureGraphNet

    model = randomize_(timm_model(family, image=(20, 24), window=(3, 4), embed_dim=8, depths=(2, 2),
                                  heads=(1, 2))).eval()
    x = torch.randn(1, 3, 20, 24, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = FeatureGraphNet(model, out_indices=(0, 1))(x)
    swin_kernels.patch(model)
    features = FeatureGraphNet(model, out_indices=(0, 1))
    assert _leaf_nodes(features.graph_module.graph) == 4, "one fused node per patched block"
    with torch.no_grad():
        actual = features(x)
    assert len(actual) == len(expected) == 2
    for a, e in zip(actual, expected):
        _assert_close(a, e, f"{family} FX feature")


# ----------------------------------------------------------------------------------------------- TorchScript
@pytest.mark.parametrize("name", ["HF Swin", "timm V1", "torchvision V1"])
def test_jit_script_raises_one_clear_error(name):
    model, _ = _model_and_input(name)
    swin_kernels.patch(model)
    with pytest.raises(ScriptingPatchedModelError, match=r"swin_kernels\.unpatch"):
        torch.jit.script(model)


def test_jit_script_after_unpatch():
    model, x = _model_and_input("torchvision V1")
    with torch.no_grad():
        expected = model(x)
    swin_kernels.unpatch(swin_kernels.patch(model))
    scripted = torch.jit.script(model)
    with torch.no_grad():
        _assert_close(scripted(x), expected, "scripted unpatched model")


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")  # shape checks baked in, as in any trace
def test_jit_trace_follows_weight_updates():
    """A trace of a patched HF model (no warm-up, under no_grad) reads the q/k/v weights on every run."""
    model, x = _model_and_input("HF Swin")
    swin_kernels.patch(model)
    with torch.no_grad():
        traced = torch.jit.trace(model, (x,), strict=False, check_trace=False)
        reference = _hf_tiny().eval()
        reference.load_state_dict(model.state_dict())
        _assert_close(traced(x)["logits"], reference(x).logits, "traced patched model")
        for module in (model, reference):
            for name, p in module.named_parameters():
                if "k_proj" in name or "q_proj" in name:
                    p.data.mul_(1.5)
        _assert_close(traced(x)["logits"], reference(x).logits, "traced patched model after a weight update")
