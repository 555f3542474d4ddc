"""A patched model stays right whatever its user does with it: weight updates through every path, wrappers and
quantized Linears put on its projections after patch(), small inputs, hooks registered after patch(), explain()
on such models, attention dropout on a named backend, empty batches, a backend that cannot run here.

Each check runs the patched model beside the unpatched one, given the same treatment: fp64 <= 1e-10 (fp32 and
quantized models at the tolerances stated there)."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
from torch import nn

import swin_kernels
from swin_kernels.backends import FallbackWarning
from swin_kernels.patches import common, is_patched

from swin_family_models import ALL_CASES, NATIVE_BACKENDS, assert_close, output_tensors, swin_config, randomize_
from timm_torchvision_models import BY_NAME as TT_CASES
from timm_torchvision_models import TINY, attention_blocks

HF = {case.name: case for case in ALL_CASES}
F64 = torch.float64


@pytest.fixture(autouse=True)
def fresh_warnings():
    common._WARNED_OWN_CODE.clear()
    yield
    common._WARNED_OWN_CODE.clear()


def _hf_outputs(model, case, dtype=F64, **kwargs):
    with torch.no_grad():
        return output_tensors(model(**case.inputs(dtype, **kwargs)))


def _pair(case, backend="reference", dtype=F64):
    model = case.model(dtype).eval()
    return model, swin_kernels.patch(copy.deepcopy(model), backend=backend)


# ------------------------------------------------------------------------------------------ weight updates
def _scale_qkv_data(m):
    for name, p in m.named_parameters():
        if "query" in name or "key" in name or "value" in name or "_proj" in name:
            p.data.mul_(1.3)


def _assign_qkv_data(m):
    for name, p in m.named_parameters():
        if name.endswith(("query.weight", "q_proj.weight", "value.weight", "v_proj.weight")):
            p.data = p.data.flip(0).clone()


def _no_grad_in_place(m):
    with torch.no_grad():
        for name, p in m.named_parameters():
            if name.endswith(("key.weight", "k_proj.weight")):
                p.add_(0.1)


def _load_state_dict(m):
    m.load_state_dict(randomize_(copy.deepcopy(m), seed=9).state_dict())


def _optimizer_step(m):
    params = [p for n, p in m.named_parameters() if "attention" in n]
    for p in params:
        p.grad = torch.full_like(p, 0.05)
    torch.optim.SGD(params, lr=1.0).step()


def _ema_lerp(m):
    params = [p.data for p in m.parameters()]
    targets = [torch.full_like(p, 0.2) for p in params]
    torch._foreach_lerp_(params, targets, 0.3)


def _vector_to_parameters(m):
    vector = nn.utils.parameters_to_vector(m.parameters())
    nn.utils.vector_to_parameters(vector * 0.9, m.parameters())


UPDATES = [_scale_qkv_data, _assign_qkv_data, _no_grad_in_place, _load_state_dict, _optimizer_step, _ema_lerp,
           _vector_to_parameters]


@pytest.mark.parametrize("update", UPDATES, ids=lambda f: f.__name__.strip("_"))
@pytest.mark.parametrize("case", ["SwinModel", "DonutSwinModel", "Swinv2Model"])
def test_every_weight_update_is_seen(case, update):
    case = HF[case]
    model, patched = _pair(case)
    assert_close(_hf_outputs(patched, case), _hf_outputs(model, case), F64, "before")  # a first inference call
    for m in (model, patched):
        update(m)
    assert_close(_hf_outputs(patched, case), _hf_outputs(model, case), F64, f"after {update.__name__}")


# ---------------------------------------------------------------------------------------------- wrappers
class LoraLike(nn.Module):
    """A PEFT-style wrapper: base_layer plus a low-rank update, the base layer's weight exposed."""

    def __init__(self, base: nn.Linear, rank: int = 2) -> None:
        super().__init__()
        self.base_layer = base
        self.lora_A = nn.Linear(base.in_features, rank, bias=False, dtype=base.weight.dtype)
        self.lora_B = nn.Linear(rank, base.out_features, bias=False, dtype=base.weight.dtype)
        nn.init.normal_(self.lora_B.weight)
        self.calls = 0

    @property
    def weight(self):
        return self.base_layer.weight

    @property
    def bias(self):
        return self.base_layer.bias

    def forward(self, x):
        self.calls += 1
        return self.base_layer(x) + self.lora_B(self.lora_A(x))


class NoWeight(LoraLike):
    weight = None
    bias = None


def _wrap(model, paths, wrapper, seed=3):
    torch.manual_seed(seed)
    wrappers = []
    for path in paths:
        parent, name = path.rsplit(".", 1)
        owner = model.get_submodule(parent)
        wrappers.append(wrapper(getattr(owner, name)))
        setattr(owner, name, wrappers[-1])
    return wrappers


HF_WRAPPED = {
    "SwinModel": ["encoder.layers.0.blocks.1.attention.q_proj", "encoder.layers.1.blocks.0.attention.v_proj"],
    "DonutSwinModel": ["encoder.layers.0.blocks.1.attention.self.value"],
    "Swinv2Model": ["encoder.layers.0.blocks.1.attention.self.query"],
}


@pytest.mark.parametrize("wrapper", [LoraLike, NoWeight], ids=["lora", "no_weight"])
@pytest.mark.parametrize("case", list(HF_WRAPPED))
def test_hf_projection_wrappers_put_on_after_patch_run(case, wrapper, monkeypatch):
    case = HF[case]
    model, patched = _pair(case)
    _wrap(model, HF_WRAPPED[case.name], wrapper)
    wrappers = _wrap(patched, HF_WRAPPED[case.name], wrapper)
    calls = []
    real = swin_kernels.functional.attention_on_geometry
    monkeypatch.setattr(swin_kernels.functional, "attention_on_geometry",
                        lambda *a, **k: calls.append(1) or real(*a, **k))
    assert_close(_hf_outputs(patched, case), _hf_outputs(model, case), F64, "wrapped")
    assert all(w.calls == 1 for w in wrappers)
    blocks = [m for m in patched.modules() if is_patched(m)]
    assert len(calls) == len(blocks)  # every block still on the fused op
    assert "runs on reference" in str(swin_kernels.explain(patched))


def _tt_outputs(model, case, dtype=F64, batch=2):
    with torch.no_grad():
        return output_tensors(model(case.inputs(dtype, batch=batch)))


@pytest.mark.parametrize("wrapper", [LoraLike, NoWeight], ids=["lora", "no_weight"])
@pytest.mark.parametrize("family", ["timm V1", "timm V2", "torchvision V1", "torchvision V2"])
def test_qkv_wrappers_put_on_after_patch_give_the_library_answer(family, wrapper):
    """timm V1 calls qkv (the wrapper runs); timm V2 with q/v biases and torchvision read qkv.weight (the wrapper's
    update is not applied, as in the library); where the library cannot read a weight, both fail alike."""
    case = TINY[family]
    model = case.model(F64).eval()
    patched = swin_kernels.patch(copy.deepcopy(model), backend="reference")
    for m in (model, patched):
        blocks = attention_blocks(m)
        attn = [b.attn if hasattr(b, "attn") else b for b in blocks]
        torch.manual_seed(3)
        for a in attn:
            a.qkv = wrapper(a.qkv)
    try:
        expected = _tt_outputs(model, case)
    except Exception as error:
        with pytest.raises(type(error)):
            _tt_outputs(patched, case)
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FallbackWarning)
        assert_close(_tt_outputs(patched, case), expected, F64, f"{family} wrapped")


# ------------------------------------------------------------------------------------------- no state
@pytest.mark.parametrize("case", ["SwinModel", "DonutSwinModel"])
def test_a_small_input_does_not_change_later_calls(case):
    case = HF[case]
    model, patched = _pair(case)
    state = [(b.window_size, b.shift_size) for b in patched.modules() if is_patched(b)]
    _hf_outputs(patched, case, image=(16, 16))  # maps 4x4, 2x2, 1x1: every later stage clamped (HF raises here)
    for image in [(64, 64), (96, 80)]:
        fresh = copy.deepcopy(model)
        assert_close(_hf_outputs(patched, case, image=image), _hf_outputs(fresh, case, image=image), F64, image)
    assert [(b.window_size, b.shift_size) for b in patched.modules() if is_patched(b)] == state


def test_attention_weights_path_leaves_no_state():
    model = randomize_(swin_kernels_model := __import__("transformers").SwinModel(
        swin_config(attn_implementation="eager"))).double().eval()
    patched = swin_kernels.patch(copy.deepcopy(swin_kernels_model), backend="reference")
    case = HF["SwinModel"]
    with torch.no_grad():  # the last map 5x4 is clamped: HF's own forward runs and zeroes the shift
        patched(**case.inputs(F64), output_attentions=True)
    fresh = copy.deepcopy(model)  # 96x80: the last map 6x5 is not clamped, its blocks shift again
    for a, e in zip(_hf_outputs(patched, case, image=(96, 80)), _hf_outputs(fresh, case, image=(96, 80)), strict=True):
        assert (a - e).abs().max() <= 1e-6 * e.abs().max()  # HF's eager softmax runs in fp32


# ------------------------------------------------------------------------------------------------ hooks
def _hook_counter():
    counts = {"pre": 0, "post": 0}

    def pre(*args):
        counts["pre"] += 1

    def post(*args):
        counts["post"] += 1

    return counts, pre, post


@pytest.mark.parametrize("case,path", [("SwinModel", "encoder.layers.0.blocks.1.attention"),
                                       ("DonutSwinModel", "encoder.layers.0.blocks.1.attention.self"),
                                       ("Swinv2Model", "encoder.layers.0.blocks.1.attention")])
def test_hf_hooks_registered_after_patch_fire(case, path):
    case = HF[case]
    model, patched = _pair(case)
    counts, pre, post = _hook_counter()
    module = patched.get_submodule(path)
    handles = [module.register_forward_pre_hook(pre), module.register_forward_hook(post)]
    with pytest.warns(FallbackWarning, match="has hooks"):
        actual = _hf_outputs(patched, case)
    assert counts == {"pre": 1, "post": 1}
    assert_close(actual, _hf_outputs(model, case), F64, "hooked")
    explanation = swin_kernels.explain(patched)
    assert "1 block(s): runs its own forward" in str(explanation)
    for handle in handles:
        handle.remove()
    assert "runs its own forward" not in str(swin_kernels.explain(patched))


@pytest.mark.parametrize("family", ["timm V1", "timm V2"])
def test_timm_attn_hooks_registered_after_patch_fire(family):
    case = TINY[family]
    model = case.model(F64).eval()
    patched = swin_kernels.patch(copy.deepcopy(model), backend="reference")
    counts, pre, post = _hook_counter()
    attn = attention_blocks(patched)[1].attn
    attn.register_forward_pre_hook(pre)
    attn.register_forward_hook(post)
    with pytest.warns(FallbackWarning, match="attn has hooks"):
        actual = _tt_outputs(patched, case)
    assert counts == {"pre": 1, "post": 1}
    assert_close(actual, _tt_outputs(model, case), F64, "hooked")


def test_hooks_on_called_projections_fire_on_the_fused_path(monkeypatch):
    case = HF["SwinModel"]
    model, patched = _pair(case)
    counts, pre, post = _hook_counter()
    q = patched.get_submodule("encoder.layers.0.blocks.1.attention.q_proj")
    q.register_forward_pre_hook(pre)
    q.register_forward_hook(post)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FallbackWarning)
        actual = _hf_outputs(patched, case)
    assert counts == {"pre": 1, "post": 1}
    assert_close(actual, _hf_outputs(model, case), F64, "q_proj hooked")


# ---------------------------------------------------------------------------------- quantized, explain
def test_quantize_dynamic_after_patch_runs_and_explains():
    case = HF["SwinForImageClassification"]
    model = case.model(torch.float32).eval()
    patched = swin_kernels.patch(copy.deepcopy(model), backend="reference")
    quantized = torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)
    patched_quantized = torch.ao.quantization.quantize_dynamic(patched, {nn.Linear}, dtype=torch.qint8)
    float_out = _hf_outputs(model, case, torch.float32)
    actual = _hf_outputs(patched_quantized, case, torch.float32)
    expected = _hf_outputs(quantized, case, torch.float32)
    for a, e, f in zip(actual, expected, float_out, strict=True):
        # int8 activations are scaled per tensor: HF's own o_proj also sees its padded tokens' outputs, the fused
        # path's does not, so the two quantize differently; each must be as close to the float model as the other
        own, ours = (e - f).abs().max(), (a - f).abs().max()
        assert ours <= 2 * own + 1e-6 * f.abs().max(), (ours, own)
    text = str(swin_kernels.explain(patched_quantized))
    blocks = sum(is_patched(m) for m in patched_quantized.modules())
    assert text.splitlines()[1].startswith(f"- {blocks} block(s): runs on reference")
    verbose = str(swin_kernels.explain(patched_quantized, verbose=True))
    assert sum(line.startswith("- swin.encoder.") for line in verbose.splitlines()) == blocks


def test_explain_summarises_by_default():
    model = swin_kernels.patch(HF["SwinForImageClassification"].model(torch.float32), backend="reference")
    blocks = sum(is_patched(m) for m in model.modules())
    text = str(swin_kernels.explain(model))
    assert len(text.splitlines()) <= 2 + len(swin_kernels.backends.BACKEND_NAMES)
    assert f"- {blocks} block(s): runs on reference" in text


# --------------------------------------------------------------------------------- dropout, batch 0, cuda
@pytest.mark.parametrize("backend", [b for b in NATIVE_BACKENDS if b != "reference"] or [
    pytest.param("cpp", marks=pytest.mark.skip(reason="no fused CPU backend in this build"))])
def test_named_backend_without_dropout_warns_once_and_runs_the_block(backend):
    model = randomize_(__import__("transformers").SwinModel(swin_config(attention_probs_dropout_prob=0.3))).train()
    patched = swin_kernels.patch(copy.deepcopy(model), backend=backend)
    inputs = HF["SwinModel"].inputs(torch.float32)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.manual_seed(0)
        actual = patched(**inputs).last_hidden_state
        patched(**inputs)
    messages = [str(w.message) for w in caught if issubclass(w.category, FallbackWarning)]
    assert len(messages) == 1 and f"which the {backend} backend lacks" in messages[0]
    torch.manual_seed(0)
    assert torch.equal(actual, model(**inputs).last_hidden_state)  # the block's own code, same dropout masks


@pytest.mark.parametrize("backend", NATIVE_BACKENDS)
@pytest.mark.parametrize("name", ["torchvision V1, window [4, 6]", "torchvision V2, window [4, 6]"])
def test_empty_batch_torchvision(name, backend):
    case = TT_CASES[name]
    model = case.model(torch.float32).eval()
    patched = swin_kernels.patch(copy.deepcopy(model), backend=backend)
    expected = _tt_outputs(model, case, torch.float32, batch=0)
    assert [t.shape for t in _tt_outputs(patched, case, torch.float32, batch=0)] == [t.shape for t in expected]


def _empty_block_calls(model):
    """Each patched block called on an empty batch (timm's and HF's models fail on one outside the attention):
    their outputs."""
    for block in [m for m in model.modules() if is_patched(m)][:2]:
        if hasattr(block, "_attn"):  # timm: the replaced method on a (B, H, W, C) map
            x = torch.zeros(0, *block.input_resolution, block.attn.proj.in_features)  # the static mask's size
            yield block._attn(x)
        else:  # HF: the block on (B, H*W, C)
            x = torch.zeros(0, 5 * 7, block.layernorm_before.normalized_shape[0])
            yield block(x, (5, 7))[0]


@pytest.mark.parametrize("backend", NATIVE_BACKENDS)
@pytest.mark.parametrize("name", ["timm V1 classifier, window (4, 6)", "timm V2 classifier, window (4, 6)",
                                  "SwinModel", "Swinv2Model", "DonutSwinModel"])
def test_empty_batch_blocks(name, backend):
    case = TT_CASES.get(name) or HF[name]
    patched = swin_kernels.patch(case.model(torch.float32).eval(), backend=backend)
    with torch.no_grad():
        for out in _empty_block_calls(patched):
            assert out.shape[0] == 0 and out.numel() == 0 and out.dim() in (3, 4)


@pytest.mark.parametrize("backend", NATIVE_BACKENDS)
def test_empty_batch_module(backend):
    module = swin_kernels.FusedWindowAttention(16, 2, 4, 2, backend=backend)
    x = torch.randn(0, 6, 9, 16, requires_grad=True)
    out = module(x)
    assert out.shape == (0, 6, 9, 16)
    out.sum().backward()
    assert x.grad.shape == x.shape


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")
def test_cuda_module_without_a_device_fails_at_construction():
    with pytest.raises(swin_kernels.BackendUnavailableError, match="^cuda: no CUDA device"):
        swin_kernels.FusedWindowAttention(32, 2, 7, backend="cuda")


def test_v2_cosine_in_place_never_touches_a_tensor_a_hook_has_seen():
    """HF V2 with a hooked key Linear: the fused path calls it and concatenates its output with q's and v's; V2's
    cosine normalisation then runs in place on that fresh map, never on the output the hook kept."""
    case = HF["Swinv2Model"]
    model, patched = _pair(case)
    key = patched.get_submodule("encoder.layers.0.blocks.1.attention.self.key")
    seen = []
    key.register_forward_hook(lambda module, args, out: seen.append((args[0].clone(), out)))
    with warnings.catch_warnings():
        warnings.simplefilter("error", FallbackWarning)
        actual = _hf_outputs(patched, case)
    assert len(seen) == 1
    x, out = seen[0]
    torch.testing.assert_close(out, nn.functional.linear(x, key.weight, key.bias), rtol=0, atol=0)
    assert_close(actual, _hf_outputs(model, case), F64, "key hooked")
