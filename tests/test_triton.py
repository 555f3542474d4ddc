"""The "triton" backend against the PyTorch reference; without a GPU the kernels run in Triton's interpreter.

Shapes are small on purpose (the interpreter runs each program in Python). fp64 follows the FMA plan
(exact products; 32-token blocks, so N = 49 already takes the multi-block path), fp16/bf16 and fp32 (3xTF32 by
default; test_triton_fp32.py covers its precisions) the tensor-core plan (64-token blocks, d_bias kept in
registers): between them both backward code paths are exercised.
Volumes (B, D, H, W, C) with 3-D windows and windows of more than 256 tokens (one backward program per block)
are checked the same way, on shapes as small as still reach each path.
"""

from __future__ import annotations

import pytest
import torch
import torch._dynamo.testing

import swin_kernels
from swin_kernels import backends, reference
from swin_kernels.backends import Request
from swin_kernels.geometry import SHIFT_MASK_VALUE, WindowGeometry
from swin_kernels.modules import FusedWindowAttention

from backend_checks import (
    ATTENTION_CASES,
    GEOMETRY_CASES,
    PARTITION_CASES,
    VOLUME_CASES,
    VOLUME_PARTITION_CASES,
    AttentionCase,
    assert_relative_close,
    attention_inputs,
    check_attention,
    check_bias_grad_deterministic,
    check_partition,
    check_volume_partition,
    partition_case_id,
    volume_partition_case_id,
)

BACKEND = "triton"
_REASON = backends.unavailable_reason(BACKEND)
pytestmark = pytest.mark.skipif(_REASON is not None, reason=f"triton backend unavailable: {_REASON}")


def _device() -> str:
    """CPU tensors under the interpreter, CUDA tensors on a GPU."""
    if _REASON is not None:
        return "cpu"
    from swin_kernels.ops.triton.configs import INTERPRET

    return "cpu" if INTERPRET else "cuda"


DEVICE = _device()
INTERPRETED = DEVICE == "cpu"

# windows 9-11 (N = 81..121), a head_dim that is not a power of two, and head_dim 128
EXTRA_CASES = [
    AttentionCase(1, 9, 11, 1, 24, 9, 4),
    AttentionCase(1, 10, 10, 1, 8, 10, 0),
    AttentionCase(1, 11, 12, 1, 128, 11, 5),
]


@pytest.mark.parametrize("case", ATTENTION_CASES + EXTRA_CASES + GEOMETRY_CASES, ids=str)
def test_attention_fp32(case):
    check_attention(BACKEND, case, torch.float32, DEVICE)


@pytest.mark.parametrize("case", ATTENTION_CASES + GEOMETRY_CASES, ids=str)
def test_attention_fp64(case):
    check_attention(BACKEND, case, torch.float64, DEVICE)


@pytest.mark.parametrize("case", ATTENTION_CASES + GEOMETRY_CASES[:3], ids=str)
def test_attention_bf16(case):
    check_attention(BACKEND, case, torch.bfloat16, DEVICE)


@pytest.mark.parametrize("case", ATTENTION_CASES[1:4] + ATTENTION_CASES[7:], ids=str)
def test_attention_fp16(case):
    check_attention(BACKEND, case, torch.float16, DEVICE)


@pytest.mark.parametrize("case, dtype", [(ATTENTION_CASES[2], torch.float32), (ATTENTION_CASES[7], torch.bfloat16)],
                         ids=str)
def test_gradients_bit_identical_between_runs(case, dtype):
    check_bias_grad_deterministic(BACKEND, case, dtype, DEVICE)


@pytest.mark.parametrize("case, dtype", [
    (ATTENTION_CASES[1], torch.bfloat16),  # N = 49 in one 64-token block: d_bias in registers, (N, N) slots
    (ATTENTION_CASES[1], torch.float64),   # N = 49 in two 32-token blocks: d_bias added in place, padded slots
    (ATTENTION_CASES[2], torch.float32),   # 36 windows over 5 slots, the last one shorter; padded, shifted
], ids=str)
def test_backward_slots_of_several_windows(monkeypatch, case, dtype):
    """The backward's partial sums (d_bias, d_pad) over runs of several windows per program, as late Swin stages
    run them (few windows, many heads), against the reference: a few programs make every run long."""
    from swin_kernels.ops.triton import configs

    for name in ("DQ_PROGRAMS", "DKDV_PROGRAMS", "MAX_SLOTS"):
        monkeypatch.setattr(configs, name, 5)
    runs = []
    slots = configs.backward_slots

    def recorded(*args, **kwargs):
        runs.append(slots(*args, **kwargs))
        return runs[-1]

    monkeypatch.setattr(configs, "backward_slots", recorded)
    check_attention(BACKEND, case, dtype, DEVICE)
    assert runs and all(per_slot > 1 for _, per_slot in runs), runs


def test_without_pad_vector_or_bias_and_with_scale_override():
    case = ATTENTION_CASES[2]  # padded both ways, shifted
    inputs = attention_inputs(case, torch.float64, DEVICE)
    grad_out = torch.randn(case.batch, case.height, case.width, case.channels, dtype=torch.float64).to(DEVICE)
    results = {}
    for backend in ("reference", BACKEND):
        out = swin_kernels.shifted_window_attention(inputs["qkv"], case.heads, case.window, case.shift, scale=0.37,
                                                    backend=backend)
        (grad,) = torch.autograd.grad(out, inputs["qkv"], grad_out)
        results[backend] = out, grad
    assert_relative_close(results[BACKEND][0], results["reference"][0], 1e-10, "output")
    assert_relative_close(results[BACKEND][1], results["reference"][1], 1e-10, "dqkv")


def test_gradient_of_qkv_only():
    """bias and pad vector that need no gradient: the kernels skip their sums."""
    case = ATTENTION_CASES[1]
    inputs = attention_inputs(case, torch.float64, DEVICE)
    inputs["bias"].requires_grad_(False)
    inputs["pad_qkv"].requires_grad_(False)
    grads = []
    for backend in ("reference", BACKEND):
        out = swin_kernels.shifted_window_attention(inputs["qkv"], case.heads, case.window, case.shift,
                                                    pad_qkv=inputs["pad_qkv"], bias=inputs["bias"], backend=backend)
        grads.append(torch.autograd.grad(out.square().sum(), inputs["qkv"])[0])
    assert_relative_close(grads[1], grads[0], 1e-10, "dqkv")


# ---------------------------------------------------------------------------------------------------- dropout
DROPOUT_CASE = AttentionCase(1, 16, 16, 2, 16, 4, 2)  # N = 16 = head_dim, no padding, shifted


def _one_hot_values(case: AttentionCase, dtype) -> dict:
    """Random q, k; v of the token in window slot t is the one-hot e_t, so the output row i is row i of P."""
    inputs = attention_inputs(case, dtype, DEVICE)
    g = WindowGeometry(case.height, case.width, case.window, case.shift)
    one_hot = torch.eye(g.tokens, dtype=dtype, device=DEVICE)
    slots = one_hot.repeat(g.num_windows * case.batch, 1, 1).repeat(1, 1, case.heads)  # (B·nW, N, heads·N)
    v = reference.window_reverse(slots, case.window, case.height, case.width, case.shift)
    qkv = inputs["qkv"].detach().clone()
    qkv[..., 2 * case.channels:] = v
    inputs["qkv"] = qkv.requires_grad_()
    return inputs


def _attention_matrix(out: torch.Tensor, case: AttentionCase) -> torch.Tensor:
    """(B·nW, heads, N, N) from the output of one-hot values."""
    rows = reference.window_partition(out, case.window, case.shift)  # (B·nW, N, heads·N)
    return rows.reshape(rows.shape[0], rows.shape[1], case.heads, -1).transpose(1, 2)


def _run(case, inputs, dropout_p, seed, backend=BACKEND):
    torch.manual_seed(seed)
    return swin_kernels.shifted_window_attention(inputs["qkv"], case.heads, case.window, case.shift,
                                                 pad_qkv=inputs["pad_qkv"], bias=inputs["bias"], dropout_p=dropout_p,
                                                 backend=backend)


def test_dropout_zero_probability_matches_reference():
    case = DROPOUT_CASE
    inputs = attention_inputs(case, torch.float64, DEVICE)
    assert_relative_close(_run(case, inputs, 0.0, 0), _run(case, inputs, 0.0, 0, "reference"), 1e-10, "output")


def test_dropout_drops_a_fraction_p_and_rescales_the_rest():
    case, p = DROPOUT_CASE, 0.3
    inputs = _one_hot_values(case, torch.float64)
    probs = _attention_matrix(_run(case, inputs, 0.0, 0), case).detach()
    dropped = _attention_matrix(_run(case, inputs, p, 1234), case).detach()
    assert torch.allclose(probs.sum(-1), torch.ones_like(probs.sum(-1)))  # one-hot values expose P itself
    kept = dropped != 0
    assert torch.allclose(dropped[kept], probs[kept] / (1 - p), rtol=1e-12, atol=0)
    n = kept.numel()
    zero_fraction = 1 - kept.double().mean().item()
    assert abs(zero_fraction - p) < 4 * (p * (1 - p) / n) ** 0.5, f"dropped {zero_fraction:.4f} of {n}, p = {p}"
    # masks differ between windows and heads (the counter includes both)
    assert not torch.equal(kept[0], kept[1]) and not torch.equal(kept[:, 0], kept[:, 1])


def test_dropout_same_seed_same_output_and_other_seed_other_mask():
    case = DROPOUT_CASE
    inputs = attention_inputs(case, torch.float32, DEVICE)
    first, again, other = (_run(case, inputs, 0.5, seed) for seed in (7, 7, 8))
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def _explicit_mask_attention(case, inputs, keep, p, scale):
    """The reference pipeline with a given keep mask (B·nW, heads, N, N) in place of random dropout."""
    g = WindowGeometry(case.height, case.width, case.window, case.shift)
    windows = reference.partition_windows(reference.pad_and_roll(inputs["qkv"], g, inputs["pad_qkv"]), g.window)
    q, k, v = reference.split_heads(windows, case.heads)
    scores = (q * scale) @ k.transpose(-2, -1) + inputs["bias"]
    region = reference.partition_windows(reference.shift_region_ids(g, q.device)[None, :, :, None].double(),
                                         g.window)[..., 0]
    scores = scores + torch.where(region[:, None, :, None] != region[:, None, None, :], SHIFT_MASK_VALUE, 0.0)
    out = reference.merge_heads((scores.softmax(-1) * keep / (1 - p)) @ v)
    return reference.unroll_and_crop(reference.merge_windows(out, g.window, g.padded_height, g.padded_width), g)


def test_dropout_backward_matches_explicit_mask_reference():
    case, p, seed = DROPOUT_CASE, 0.25, 99
    keep = _attention_matrix(_run(case, _one_hot_values(case, torch.float64), p, seed), case).detach() != 0
    inputs = attention_inputs(case, torch.float64, DEVICE)
    grad_out = torch.randn(case.batch, case.height, case.width, case.channels, dtype=torch.float64).to(DEVICE)
    ours = _run(case, inputs, p, seed)  # same seed and shapes: the same mask
    expected = _explicit_mask_attention(case, inputs, keep, p, case.head_dim**-0.5)
    assert_relative_close(ours, expected, 1e-10, "dropout output")
    names = list(inputs)
    ours_grads = torch.autograd.grad(ours, [inputs[n] for n in names], grad_out, materialize_grads=True)
    expected_grads = torch.autograd.grad(expected, [inputs[n] for n in names], grad_out, materialize_grads=True)
    for name, actual, wanted in zip(names, ours_grads, expected_grads):
        assert_relative_close(actual, wanted, 1e-10, f"dropout d{name}")


# ------------------------------------------------------------------------------------------------- the module
@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
def test_fused_window_attention_module_matches_reference(train):
    torch.manual_seed(0)
    ours = FusedWindowAttention(32, 2, window_size=7, shift_size=3, backend=BACKEND).double().to(DEVICE).train(train)
    theirs = FusedWindowAttention(32, 2, window_size=7, shift_size=3, backend="reference").double().to(DEVICE)
    theirs.load_state_dict(ours.state_dict())
    theirs.train(train)
    x = torch.randn(2, 10, 13, 32, dtype=torch.float64, device=DEVICE)
    outputs, grads = [], []
    for module in (ours, theirs):
        xi = x.clone().requires_grad_()
        out = module(xi)
        params = [xi] + list(module.parameters())
        outputs.append(out)
        grads.append(torch.autograd.grad(out, params, torch.ones_like(out)))
    assert_relative_close(outputs[0], outputs[1], 1e-10, "module output")
    names = ["x"] + [name for name, _ in ours.named_parameters()]
    for name, actual, expected in zip(names, *grads):
        assert_relative_close(actual, expected, 1e-10, f"module d{name}")


# ----------------------------------------------------------------------------------------- partition / reverse
@pytest.mark.parametrize("case", PARTITION_CASES, ids=partition_case_id)
def test_partition_and_reverse_exact(case):
    check_partition(BACKEND, *case, device=DEVICE)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float64], ids=str)
def test_partition_and_reverse_exact_other_dtypes(dtype):
    check_partition(BACKEND, 2, 9, 13, 6, (4, 3), (2, 1), True, dtype=dtype, device=DEVICE)


# ------------------------------------------------------------------------------------------------------ reasons
def test_unsupported_calls_say_why():
    device = torch.device(DEVICE)

    def reason(**fields):
        request = dict(op="attention", device=device, dtype=torch.float32, window=(7, 7), head_dim=32)
        return backends.reasons(Request(**{**request, **fields}))[BACKEND]

    assert reason() is None
    assert "head_dim up to 128" in reason(head_dim=256)
    assert "up to 576 tokens" in reason(window=(25, 24))
    assert "up to 576 tokens" in reason(window=(8, 73))
    assert reason(window=(24, 24)) is None and reason(window=(17, 17)) is None
    assert reason(window=(8, 7, 7)) is None and reason(window=(8, 8, 9)) is None  # 3-D windows
    assert "up to 576 tokens" in reason(window=(9, 9, 8)) and "9x9x8 (648 tokens)" in reason(window=(9, 9, 8))
    assert "float16, bfloat16, float32 and float64" in reason(dtype=torch.int32)
    assert reason(op="partition", window=(40, 40), dtype=torch.int64) is None  # data movement: any window and dtype
    other = torch.device("cuda" if DEVICE == "cpu" else "cpu")
    assert "tensor" in reason(device=other)
    with pytest.raises(swin_kernels.BackendUnavailableError, match="^triton: [a-z]"):  # one prefix, not two
        swin_kernels.shifted_window_attention(torch.randn(1, 4, 4, 6, device="meta"), 1, 4, backend=BACKEND)


def test_zero_scale_is_a_clear_error():
    """The score table holds (bias + mask) / scale: a zero scale is refused, not turned into inf/nan."""
    case = ATTENTION_CASES[0]
    inputs = attention_inputs(case, torch.float64, DEVICE)
    with pytest.raises(ValueError, match="scale must be finite and nonzero"):
        swin_kernels.shifted_window_attention(inputs["qkv"], case.heads, case.window, scale=0.0, backend=BACKEND)


def test_row_delta_is_rowsum_of_dout_times_out_in_the_lse_layout():
    """D of every (window, head) row at its padded-layout place, 0 for padding tokens and rows past N."""
    from swin_kernels.ops.triton import configs
    from swin_kernels.ops.triton.row_delta import row_delta

    case = ATTENTION_CASES[2]  # padded both ways, shifted
    g = WindowGeometry(case.height, case.width, case.window, case.shift)
    plan = configs.attention_plan(g.tokens, case.head_dim, torch.float64)
    out, dout = (torch.randn(case.batch, case.height, case.width, case.channels, dtype=torch.float64, device=DEVICE)
                 for _ in range(2))
    lse = torch.empty(case.batch * g.num_windows * case.heads, plan.padded, dtype=torch.float64, device=DEVICE)
    delta = row_delta(out, dout, lse, case.heads, g, plan)
    per_token = (out * dout).reshape(case.batch, case.height, case.width, case.heads, case.head_dim).sum(-1)
    windows = reference.window_partition(per_token, case.window, case.shift)  # (B·nW, N, heads), padding 0
    expected = torch.zeros_like(delta)
    expected.view(-1, case.heads, plan.padded)[:, :, :g.tokens] = windows.transpose(1, 2)
    assert_relative_close(delta, expected, 1e-12, "row delta")


def test_token_indices_must_fit_int32():
    from swin_kernels.ops.triton.configs import check_int32_indices

    check_int32_indices(64, 4096, 8192 - 1)
    with pytest.raises(ValueError, match="32-bit"):
        check_int32_indices(64, 4096, 8192)


# ------------------------------------------------------------------------------------ the ops as torch operators
@pytest.fixture(autouse=True)
def _registered_ops():
    """The torch.ops.swin_kernels_triton namespace (registered on first use of the backend, or here)."""
    if _REASON is None:
        from swin_kernels.ops.triton import library  # noqa: F401


def _op_inputs(case: AttentionCase, dtype=torch.float64):
    inputs = attention_inputs(case, dtype, DEVICE)
    return inputs["qkv"], inputs["pad_qkv"], inputs["bias"]


OPCHECK_CASE = AttentionCase(1, 5, 7, 2, 16, (3, 2), (1, 1), True)


@pytest.mark.parametrize("dropout_p", [0.0, 0.2])
def test_opcheck_attention_forward(dropout_p):
    qkv, pad, bias = _op_inputs(OPCHECK_CASE)
    seed = torch.tensor([123], dtype=torch.int64, device=DEVICE) if dropout_p else None
    args = (qkv, pad, bias, seed, OPCHECK_CASE.heads, *OPCHECK_CASE.op_geometry(), 0.5, dropout_p, "ieee")
    torch.library.opcheck(torch.ops.swin_kernels_triton.attention_fwd.default, args)


def test_opcheck_attention_backward():
    qkv, pad, bias = [t.detach() for t in _op_inputs(OPCHECK_CASE)]
    geometry = (OPCHECK_CASE.heads, *OPCHECK_CASE.op_geometry(), 0.5, 0.0, "ieee")
    out, lse, table = torch.ops.swin_kernels_triton.attention_fwd(qkv, pad, bias, None, *geometry)
    args = (torch.randn_like(out), qkv, pad, bias, out, lse, table, None, *geometry, True, True)
    torch.library.opcheck(torch.ops.swin_kernels_triton.attention_bwd.default, args)


def test_opcheck_partition_and_reverse():
    x = torch.randn(2, 5, 7, 3, dtype=torch.float64, device=DEVICE, requires_grad=True)
    geometry = ([3, 2], [1, 1], True)
    torch.library.opcheck(torch.ops.swin_kernels_triton.window_partition.default, (x, *geometry))
    windows = torch.randn(2 * 8, 6, 3, dtype=torch.float64, device=DEVICE, requires_grad=True)
    torch.library.opcheck(torch.ops.swin_kernels_triton.window_reverse.default,
                          (windows, [3, 2], [5, 7], [1, 1], True))


def _module_loss(module, x):
    return module(x).square().mean()


def test_fullgraph_compile_of_a_training_step_matches_eager():
    """torch.compile(fullgraph=True) of FusedWindowAttention forward + backward: one graph, eager's numbers."""
    torch.manual_seed(0)
    module = FusedWindowAttention(32, 2, window_size=(4, 3), shift_size=(2, 1), backend=BACKEND).to(DEVICE).train()
    x = torch.randn(2, 9, 10, 32, device=DEVICE)
    expected = torch.autograd.grad(_module_loss(module, x), list(module.parameters()))
    torch._dynamo.reset()
    counter = torch._dynamo.testing.CompileCounterWithBackend("aot_eager" if INTERPRETED else "inductor")
    compiled = torch.compile(_module_loss, fullgraph=True, backend=counter)
    actual = torch.autograd.grad(compiled(module, x), list(module.parameters()))
    assert counter.frame_count == 1
    for name, a, e in zip([n for n, _ in module.named_parameters()], actual, expected):
        assert_relative_close(a, e, 1e-5, f"compiled d{name}")


def test_fullgraph_compile_of_a_patched_hf_model_matches_eager():
    from swin_family_models import assert_close, assert_grads_close, randomize_, run, swin_config
    import transformers as tf

    torch._dynamo.reset()
    model = randomize_(tf.SwinForImageClassification(swin_config(depths=[2], num_heads=[2], num_labels=3)))
    model = swin_kernels.patch(model.to(DEVICE).train(), backend=BACKEND)
    inputs = {"pixel_values": torch.randn(2, 3, 36, 28, device=DEVICE)}  # a padded 9x7 map, shifted
    expected, expected_grads = run(model, inputs, grad=True)
    counter = torch._dynamo.testing.CompileCounterWithBackend("aot_eager" if INTERPRETED else "inductor")
    actual, grads = run(torch.compile(model, fullgraph=True, backend=counter), inputs, grad=True)
    assert counter.frame_count == 1
    assert_close(actual, expected, torch.float32, "compiled outputs")
    assert_grads_close({k.removeprefix("_orig_mod."): v for k, v in grads.items()}, expected_grads, torch.float32,
                       "compiled")


def test_fp32_calls_work_after_the_new_tf32_switch():
    """torch's new switch (fp32_precision) makes reading the legacy allow_tf32 raise; the backend reads the new one
    and uses TF32 dot products, which must stay within TF32's error."""
    matmul = torch.backends.cuda.matmul
    if not hasattr(matmul, "fp32_precision"):
        pytest.skip("this torch has no fp32_precision switch")
    previous = matmul.fp32_precision
    case = ATTENTION_CASES[2]
    try:
        matmul.fp32_precision = "tf32"
        from swin_kernels.ops.triton import fp32_matmuls_use_tf32

        assert fp32_matmuls_use_tf32()
        check_attention(BACKEND, case, torch.float32, DEVICE, low_precision_floor=2e-3)
    finally:
        matmul.fp32_precision = previous


def test_no_host_synchronisation_in_forward_or_backward(monkeypatch):
    """The launchers never read a device value on the host (no .item() / .tolist()): the dropout seed stays on the
    device, so nothing waits on the GPU and CUDA graphs can capture the calls."""
    case = DROPOUT_CASE
    inputs = attention_inputs(case, torch.float32, DEVICE)
    swin_kernels.shifted_window_attention(inputs["qkv"], case.heads, case.window, case.shift, dropout_p=0.1,
                                          backend=BACKEND)  # first call: kernels compiled, ops registered

    def forbidden(*args, **kwargs):
        raise AssertionError("a host synchronisation (.item() / .tolist()) in the triton backend")

    monkeypatch.setattr(torch.Tensor, "item", forbidden)
    monkeypatch.setattr(torch.Tensor, "tolist", forbidden)
    out = swin_kernels.shifted_window_attention(inputs["qkv"], case.heads, case.window, case.shift,
                                                pad_qkv=inputs["pad_qkv"], bias=inputs["bias"], dropout_p=0.1,
                                                backend=BACKEND)
    torch.autograd.grad(out.sum(), list(inputs.values()))


def test_dropout_seed_comes_from_the_device_generator():
    from swin_kernels.ops.triton import dropout_seed

    device = torch.device(DEVICE)
    state = torch.cuda.get_rng_state(device) if device.type == "cuda" else torch.get_rng_state()
    first = dropout_seed(device)
    assert first.device.type == device.type and first.dtype == torch.int64
    after = torch.cuda.get_rng_state(device) if device.type == "cuda" else torch.get_rng_state()
    assert not torch.equal(state, after)  # drawn from (and advancing) the device's generator
    torch.manual_seed(5)
    a = dropout_seed(device)
    torch.manual_seed(5)
    assert torch.equal(a, dropout_seed(device))


def test_launch_configuration_is_one_per_plan():
    """No autotuning: a plan has exactly one configuration, so no input size triggers tuning and the reduction
    order (hence every bit of the gradients) is the same in every process."""
    from swin_kernels.ops.triton import configs

    for dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
        for tokens, head_dim, volume in ((49, 32, False), (256, 64, False), (576, 64, False), (392, 32, True),
                                         (343, 16, True)):
            plan = configs.attention_plan(tokens, head_dim, dtype, volume=volume)
            assert plan.forward_config() == configs.attention_plan(tokens, head_dim, dtype,
                                                                   volume=volume).forward_config()
            for kernel in ("dkdv", "dq"):
                config = plan.backward_config(kernel)
                assert plan.padded % config.kwargs["BLOCK"] == 0 and plan.padded % config.kwargs["SUB"] == 0
    assert not hasattr(configs, "_TUNERS") and not hasattr(configs, "launch")  # no autotuner anywhere


GRADIENT_HASH = r"""
import hashlib, os, sys, torch
if not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"
import swin_kernels
device = "cuda" if torch.cuda.is_available() else "cpu"
gen = torch.Generator().manual_seed(0)
qkv = torch.randn(3, 9, 13, 96, generator=gen).to(device).requires_grad_()
bias = torch.randn(1, 16, 16, generator=gen).to(device).requires_grad_()
out = swin_kernels.shifted_window_attention(qkv, 1, 4, 2, bias=bias, backend="triton")
grads = torch.autograd.grad(out, (qkv, bias), torch.randn(out.shape, generator=gen).to(device))
print(hashlib.sha256(b"".join(g.cpu().numpy().tobytes() for g in grads)).hexdigest())
"""


def test_gradients_bit_identical_between_processes():
    import subprocess
    import sys

    digests = [subprocess.run([sys.executable, "-c", GRADIENT_HASH], capture_output=True, text=True, timeout=600,
                              check=True).stdout.strip().splitlines()[-1] for _ in range(2)]
    assert digests[0] == digests[1]


# ------------------------------------------------------------------------------------- volumes (B, D, H, W, C)
# Beyond the shared VOLUME_CASES: a shift along one axis alone (each axis), a window of depth 1 (the planes are
# images: the 2-D index arithmetic), N = 36 > 32 (two blocks, one backward program each, on the exact fp32 / fp64
# path), an unshifted volume padded on every axis.
TRITON_VOLUME_CASES = [
    AttentionCase(3, 4, 5, 1, 8, (2, 2, 3), (1, 0, 0), True, depth=4),    # depth shifted only, odd batch
    AttentionCase(1, 6, 4, 1, 16, (3, 4, 2), (0, 2, 0), depth=5),         # rows shifted only, padded depth and rows
    AttentionCase(2, 3, 7, 2, 8, (2, 3, 4), (0, 0, 3), True, depth=4),    # columns shifted only, padded columns
    AttentionCase(1, 4, 6, 1, 8, (3, 4, 3), (2, 1, 1), True, depth=5),    # N = 36: two blocks on the exact path
    AttentionCase(1, 5, 6, 2, 8, (1, 3, 4), (0, 1, 2), depth=3),          # window depth 1: every plane an image
    AttentionCase(3, 4, 5, 1, 8, (2, 2, 2), (0, 0, 0), depth=3),          # unshifted, padded on every axis
]


@pytest.mark.parametrize("case", VOLUME_CASES + TRITON_VOLUME_CASES, ids=str)
def test_volume_attention_fp64(case):
    check_attention(BACKEND, case, torch.float64, DEVICE)


@pytest.mark.parametrize("case", VOLUME_CASES[:1] + TRITON_VOLUME_CASES[:4], ids=str)
def test_volume_attention_fp32(case):
    check_attention(BACKEND, case, torch.float32, DEVICE)


def test_volume_attention_bf16_tensor_core_plan():
    """bf16: one 64-token block of the tensor-core plan (d_bias in registers), within bf16's own error."""
    check_attention(BACKEND, AttentionCase(1, 6, 5, 2, 32, (4, 4, 4), (2, 2, 2), depth=4), torch.bfloat16, DEVICE)


def test_volume_bias_gradient_is_deterministic():
    check_bias_grad_deterministic(BACKEND, TRITON_VOLUME_CASES[3], torch.float32, DEVICE)


def test_volume_window_of_depth_one_is_the_map_of_its_planes():
    """A window of depth 1 (no shift along the depth) attends within each plane: the same numbers as the 2-D call on
    the (B·D, H, W, 3C) map of the planes."""
    case = TRITON_VOLUME_CASES[4]
    inputs = attention_inputs(case, torch.float64, DEVICE)
    volume = swin_kernels.shifted_window_attention(inputs["qkv"], case.heads, case.window, case.shift,
                                                   pad_qkv=inputs["pad_qkv"], bias=inputs["bias"], backend=BACKEND)
    planes = inputs["qkv"].reshape(-1, case.height, case.width, 3 * case.channels)
    flat = swin_kernels.shifted_window_attention(planes, case.heads, case.window[1:], case.shift[1:],
                                                 pad_qkv=inputs["pad_qkv"], bias=inputs["bias"], backend=BACKEND)
    assert torch.equal(volume.reshape(flat.shape), flat)


TRITON_VOLUME_PARTITION_CASES = [
    # (batch, depth, height, width, channels, window, shift, roll_before_pad)
    (2, 3, 5, 4, 3, (2, 3, 2), (1, 1, 1), False),
    (1, 4, 4, 5, 5, (2, 2, 3), (1, 0, 2), True),
    (2, 3, 5, 6, 3, (1, 3, 4), (0, 1, 2), True),  # window depth 1
]


@pytest.mark.parametrize("case", VOLUME_PARTITION_CASES + TRITON_VOLUME_PARTITION_CASES, ids=volume_partition_case_id)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_volume_partition_and_reverse_exact(case, dtype):
    check_volume_partition(BACKEND, *case, dtype=dtype, device=DEVICE)


VOLUME_OPCHECK_CASE = AttentionCase(1, 4, 3, 1, 8, (2, 3, 2), (1, 1, 1), True, depth=2)  # 4 windows, 8 classes


def test_opcheck_volume_attention():
    case = VOLUME_OPCHECK_CASE
    qkv, pad, bias = _op_inputs(case)
    geometry = (case.heads, *case.op_geometry(), 0.5, 0.0, "ieee")
    torch.library.opcheck(torch.ops.swin_kernels_triton.attention_fwd.default, (qkv, pad, bias, None, *geometry))
    qkv, pad, bias = qkv.detach(), pad.detach(), bias.detach()
    out, lse, table = torch.ops.swin_kernels_triton.attention_fwd(qkv, pad, bias, None, *geometry)
    assert table.shape[0] == 8  # a shifted volume: 8 window classes
    args = (torch.randn_like(out), qkv, pad, bias, out, lse, table, None, *geometry, True, True)
    torch.library.opcheck(torch.ops.swin_kernels_triton.attention_bwd.default, args)


def test_opcheck_volume_partition_and_reverse():
    x = torch.randn(2, 3, 5, 4, 3, dtype=torch.float64, device=DEVICE, requires_grad=True)  # 2x2x2 windows of 12
    geometry = ([2, 3, 2], [1, 1, 0], True)
    torch.library.opcheck(torch.ops.swin_kernels_triton.window_partition.default, (x, *geometry))
    windows = torch.randn(2 * 8, 12, 3, dtype=torch.float64, device=DEVICE, requires_grad=True)
    torch.library.opcheck(torch.ops.swin_kernels_triton.window_reverse.default,
                          (windows, [2, 3, 2], [3, 5, 4], [1, 1, 0], True))


def test_op_window_must_match_the_input_axes():
    qkv = torch.randn(1, 4, 4, 6, dtype=torch.float64, device=DEVICE)
    with pytest.raises(ValueError, match="one entry per spatial axis"):
        torch.ops.swin_kernels_triton.attention_fwd(qkv, None, None, None, 1, [2, 2, 2], [0, 0, 0], False, 0.5, 0.0,
                                                    "ieee")


# --------------------------------------------------------------------------------- windows of more than 256 tokens
def test_volume_window_of_273_tokens():
    """3x7x13 = 273 tokens (9 blocks of 32 on the exact path, one backward program per block), shifted on every
    axis, padded columns."""
    check_attention(BACKEND, AttentionCase(1, 7, 12, 1, 8, (3, 7, 13), (1, 3, 6), depth=3), torch.float64, DEVICE)


def test_map_window_of_289_tokens_bf16():
    """17x17 = 289 tokens (5 blocks of 64 on the tensor-core path, one backward program per block), shifted, padded
    rows."""
    check_attention(BACKEND, AttentionCase(1, 16, 17, 1, 16, 17, 8), torch.bfloat16, DEVICE)


def test_windows_of_more_than_576_tokens_are_refused_clearly():
    qkv = torch.randn(1, 25, 24, 6, device=DEVICE)
    with pytest.raises(swin_kernels.BackendUnavailableError,
                       match=r"^triton: attention supports windows of up to 576 tokens .*got 25x24 \(600 tokens\)"):
        swin_kernels.shifted_window_attention(qkv, 1, (25, 24), backend=BACKEND)
    volume = torch.randn(1, 9, 9, 8, 6, device=DEVICE)
    with pytest.raises(swin_kernels.BackendUnavailableError, match=r"up to 576 tokens .*got 9x9x8 \(648 tokens\)"):
        swin_kernels.shifted_window_attention(volume, 1, (9, 9, 8), backend=BACKEND)
