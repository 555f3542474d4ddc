"""swin_kernels.patch on timm and torchvision Swin models (V1 and V2): nothing may change but the path the
attention takes.

Each case patches a copy of a randomly initialised model and compares it with the unpatched original, the
library's own code: outputs, the input gradient and every parameter gradient, fp64 <= 1e-10 and fp32 <= 1e-5
relative, on every backend that runs here (triton under its interpreter on one tiny model per family). Every
comparison also proves the fused op ran once per block (profiler events of the compiled ops; calls of
functional.shifted_window_attention for the reference). The reference's timm order (roll, then pad), its shift
mask and its attention are checked against timm's and torchvision's own functions; torch.compile and
torch.export of patched models against eager.
"""

from __future__ import annotations

import contextlib
import copy
import math
import warnings

import pytest
import torch
import torch._dynamo.testing
import torch.nn.functional as F
from timm.models import swin_transformer as timm_v1
from timm.models import swin_transformer_v2 as timm_v2
from torchvision.models import swin_transformer as tv

import swin_kernels
from swin_kernels import functional, reference
from swin_kernels.geometry import WindowGeometry, clamp_window
from swin_kernels.patches import family_of, is_patched

from swin_family_models import (
    EMULATED_BACKENDS, NATIVE_BACKENDS, assert_close, assert_grads_close, backend_device, output_tensors,
    patch_or_skip, relative_error,
)
from timm_torchvision_models import (
    CASES, FAMILIES, TINY, Case, attention_blocks, run, timm_model, torchvision_model,
)

# Profiler event of each compiled backend's forward op (one per patched block and call).
FORWARD_EVENTS = {"cpp": "swin_kernels::window_attention_fwd", "cuda": "swin_kernels::window_attention_fwd",
                  "triton": "swin_kernels_triton::attention_fwd"}
FIRST_CASE = {family: next(c for c in CASES if c.family == family) for family in FAMILIES}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models gain nothing from threads, and on a shared, busy CPU every op of several threads waits at
    OpenMP barriers (a 234x64 Linear: 0.4 ms on one thread, 30 ms on two). Results do not depend on it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@contextlib.contextmanager
def fused_calls(backend: str):
    """Counts the fused attention calls made in the ``with`` body: appends the count to the list it yields."""
    counts: list[int] = []
    if backend in FORWARD_EVENTS:
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profile:
            yield counts
        counts.append(sum(event.name == FORWARD_EVENTS[backend] for event in profile.events()))
        return
    calls = []
    real = functional.attention_on_geometry

    def counting(*args, **kwargs):
        calls.append(kwargs.get("backend"))
        return real(*args, **kwargs)

    functional.attention_on_geometry = counting
    try:
        yield counts
    finally:
        functional.attention_on_geometry = real
    counts.append(len(calls))


def patch_quietly(model, backend):
    """patch(), asserting it left no block unpatched and warned about nothing."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        patch_or_skip(model, backend)
    messages = [str(w.message) for w in caught if "swin_kernels" in str(w.message)]
    assert not messages, messages
    blocks = attention_blocks(model)
    assert blocks and all(is_patched(b) and family_of(b) is not None for b in blocks)
    return model


def compare_with_unpatched(case, backend, dtype):
    device = backend_device(backend)
    model = case.model(dtype, device=device).train()
    patched = patch_quietly(copy.deepcopy(model), backend)
    x = case.inputs(dtype, device=device)
    expected, expected_grads = run(model, x, grad=True)
    with fused_calls(backend) as counts:
        actual, grads = run(patched, x, grad=True)
    assert counts == [len(attention_blocks(patched))], "the fused op did not run once per block"
    assert_close(actual, expected, dtype, f"{case} outputs")
    truth = Fp64Gradients(model, x) if dtype == torch.float32 else None
    assert_grads_close(grads, expected_grads, dtype, str(case), truth)


class Fp64Gradients:
    """The fp64 gradients of a model, computed when a gradient first needs them (most fp32 checks do not)."""

    def __init__(self, model, x) -> None:
        self.model, self.x, self.grads = model, x, None

    def __getitem__(self, name):
        if self.grads is None:
            self.grads = run(copy.deepcopy(self.model).double(), self.x.double(), grad=True)[1]
        return self.grads[name]


# ------------------------------------------------------------------------------------------------- exactness
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("backend", NATIVE_BACKENDS)
@pytest.mark.parametrize("case", CASES, ids=str)
def test_patched_model_matches_unpatched(case, backend, dtype):
    compare_with_unpatched(case, backend, dtype)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("backend", EMULATED_BACKENDS or [pytest.param(None, marks=pytest.mark.skip(
    reason="no backend runs in an emulator here (triton needs a GPU or TRITON_INTERPRET=1)"))])
def test_patched_model_matches_unpatched_emulated_backend(backend, family, dtype):
    compare_with_unpatched(TINY[family], backend, dtype)


# ------------------------------------------------------------------------------------------ patch / unpatch
@pytest.mark.parametrize("family", FAMILIES)
def test_unpatch_restores_bit_identical_outputs(family):
    case = FIRST_CASE[family]
    model = case.model(torch.float32).eval()
    x = case.inputs(torch.float32)
    with torch.no_grad():
        expected = output_tensors(model(x))
        patch_quietly(model, "reference")
        assert swin_kernels.unpatch(model) is model
        blocks = attention_blocks(model)
        assert not any(is_patched(b) or family_of(b).REPLACES in vars(b) for b in blocks)
        actual = output_tensors(model(x))
    for a, e in zip(actual, expected, strict=True):
        assert torch.equal(a, e)


@pytest.mark.parametrize("family", FAMILIES)
def test_state_dict_and_parameters_are_unchanged(family):
    case = FIRST_CASE[family]
    model = case.model(torch.float32)
    before = {k: (v.data_ptr(), v.shape) for k, v in model.state_dict(keep_vars=True).items()}
    parameters = list(model.parameters())
    patch_quietly(model, "auto")
    assert {k: (v.data_ptr(), v.shape) for k, v in model.state_dict(keep_vars=True).items()} == before
    assert all(a is b for a, b in zip(model.parameters(), parameters, strict=True))
    unpatched = swin_kernels.unpatch(copy.deepcopy(model))
    state = case.model(torch.float32, seed=3).state_dict()
    for m in (model, unpatched):  # a patched model loads, then computes with what it loaded
        m.load_state_dict(state)
    x = case.inputs(torch.float32)
    with torch.no_grad():
        assert_close(output_tensors(model.eval()(x)), output_tensors(unpatched.eval()(x)), torch.float32, "loaded")


# ------------------------------------------------------------------------------------------ attention dropout
def _with_attention_dropout(family):
    if family.startswith("timm"):
        return lambda: timm_model(family, attn_drop_rate=0.5)
    return lambda: torchvision_model(family, attention_dropout=0.5)


@pytest.mark.parametrize("family", FAMILIES)
def test_attention_dropout_on_a_backend_without_it_runs_the_models_own_forward(family):
    case = FIRST_CASE[family]
    model = Case(case.name, family, _with_attention_dropout(family)).model(torch.float64)
    patched = patch_quietly(copy.deepcopy(model), "cpp")
    blocks = len(attention_blocks(model))
    x = case.inputs(torch.float64)
    with torch.no_grad():
        torch.manual_seed(0)
        expected = output_tensors(model.train()(x))
        torch.manual_seed(0)
        with fused_calls("cpp") as counts:
            actual = output_tensors(patched.train()(x))
        assert counts == [0]
        for a, e in zip(actual, expected, strict=True):
            assert torch.equal(a, e)  # the library's own code, with its own dropout draws
        with fused_calls("cpp") as counts:  # in eval the fused op runs
            assert_close(output_tensors(patched.eval()(x)), output_tensors(model.eval()(x)), torch.float64, "eval")
        assert counts == [blocks]


@pytest.mark.parametrize("family", FAMILIES)
def test_attention_dropout_runs_fused_where_the_backend_has_it(family):
    case = FIRST_CASE[family]
    model = Case(case.name, family, _with_attention_dropout(family)).model(torch.float32)
    patched = patch_quietly(copy.deepcopy(model), "reference")
    x = case.inputs(torch.float32)
    with torch.no_grad():
        with fused_calls("reference") as counts:
            train_out = output_tensors(patched.train()(x))[0]
        eval_out = output_tensors(patched.eval()(x))[0]
        expected = output_tensors(model.eval()(x))[0]
    assert counts == [len(attention_blocks(model))]
    assert relative_error(eval_out, expected) <= 1e-5
    assert relative_error(train_out, expected) > 1e-2


# ----------------------------------------------------------------------------- timm's static shift mask
def _timm_block(version, **kwargs):
    gen = torch.Generator().manual_seed(0)
    if version == "V1":
        block = timm_v1.SwinTransformerBlock(dim=16, input_resolution=(8, 8), num_heads=2, window_size=4, **kwargs)
    else:
        block = timm_v2.SwinTransformerV2Block(dim=16, input_resolution=(8, 8), num_heads=2, window_size=4,
                                               **kwargs)
    with torch.no_grad():
        for p in block.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) / max(p.shape[-1], 1) ** 0.5 + (p.dim() == 1))
    return block.double().eval()


@pytest.mark.parametrize("version", ["V1", "V2"])
def test_static_mask_of_another_size_runs_timms_own_code(version):
    """A shifted block whose static mask was built for an 8x8 map (padded 8x8): a 7x6 map (padded 8x8) takes
    the fused path; a 4x8 map gets timm's own result (it applies the 8x8 mask to 2 windows as 4, which runs);
    a 12x12 map fails in timm's own code, and so in the patched block."""
    block = _timm_block(version, shift_size=2)
    patched = patch_quietly(copy.deepcopy(block), "reference")
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        x = torch.randn(2, 7, 6, 16, generator=gen, dtype=torch.float64)
        with fused_calls("reference") as counts:
            assert_close([patched(x)], [block(x)], torch.float64, "fitting mask")
        assert counts == [1]
        x = torch.randn(2, 4, 8, 16, generator=gen, dtype=torch.float64)
        with fused_calls("reference") as counts:
            assert torch.equal(patched(x), block(x))
        assert counts == [0]
        x = torch.randn(2, 12, 12, 16, generator=gen, dtype=torch.float64)
        with pytest.raises(RuntimeError) as expected:
            block(x)
        with pytest.raises(RuntimeError) as actual:
            patched(x)
    assert str(actual.value) == str(expected.value)


@pytest.mark.parametrize("version", ["V1", "V2"])
def test_dynamic_mask_block_takes_the_fused_path_at_any_size(version):
    block = _timm_block(version, shift_size=2, dynamic_mask=True)
    patched = patch_quietly(copy.deepcopy(block), "reference")
    gen = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for size in [(4, 8), (12, 12), (3, 13)]:
            x = torch.randn(2, *size, 16, generator=gen, dtype=torch.float64)
            with fused_calls("reference") as counts:
                assert_close([patched(x)], [block(x)], torch.float64, f"{size}")
            assert counts == [1]


# ----------------------------------------------------------- the reference against timm's and torchvision's code
# (H, W, window, shift): padding, per-axis shifts, a window larger than the map (timm's always_partition).
GEOMETRIES = [((9, 13), (4, 6), (2, 3)), ((7, 25), (7, 7), (0, 3)), ((4, 10), (6, 4), (3, 2)),
              ((2, 5), (6, 4), (3, 0)), ((5, 3), (2, 3), (1, 2)), ((8, 8), (4, 4), (2, 2))]


def _geometry_id(geometry):
    (h, w), window, shift = geometry
    return f"{h}x{w}_M{window[0]}x{window[1]}_s{shift[0]}x{shift[1]}"


def _timm_roll_pad_partition(x, window, shift):
    """timm's _attn up to the windows: roll the map, pad it, timm's window_partition."""
    h, w = x.shape[1:3]
    rolled = torch.roll(x, shifts=(-shift[0], -shift[1]), dims=(1, 2)) if any(shift) else x
    padded = F.pad(rolled, (0, 0, 0, (window[1] - w % window[1]) % window[1], 0, (window[0] - h % window[0])
                            % window[0]))
    return timm_v1.window_partition(padded, window).reshape(-1, window[0] * window[1], x.shape[-1]), padded.shape


@pytest.mark.parametrize("geometry", GEOMETRIES, ids=_geometry_id)
def test_reference_partition_in_timms_order_matches_timm(geometry):
    (h, w), window, shift = geometry
    x = torch.randn(2, h, w, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    expected, (_, hp, wp, _) = _timm_roll_pad_partition(x, window, shift)
    windows = reference.window_partition(x, window, shift, roll_before_pad=True)
    assert torch.equal(windows, expected)
    # timm's way back: window_reverse, crop, roll back
    back = timm_v1.window_reverse(expected.view(-1, *window, 3), window, hp, wp)[:, :h, :w]
    back = torch.roll(back, shifts=shift, dims=(1, 2)) if any(shift) else back
    assert torch.equal(reference.window_reverse(windows, window, h, w, shift, roll_before_pad=True), back)
    assert torch.equal(back, x)


@pytest.mark.parametrize("version", ["V1", "V2"])
@pytest.mark.parametrize("geometry", GEOMETRIES, ids=_geometry_id)
def test_reference_shift_mask_matches_timms_get_attn_mask(geometry, version):
    (h, w), window, shift = geometry
    block_class = timm_v1.SwinTransformerBlock if version == "V1" else timm_v2.SwinTransformerV2Block
    # always_partition: timm keeps the window and shift as given (no clamping)
    block = block_class(dim=8, input_resolution=(h, w), num_heads=1, window_size=window, shift_size=shift,
                        always_partition=True).double()
    g = WindowGeometry(h, w, window, shift, roll_before_pad=True)
    expected = reference.shift_attention_mask(g, dtype=torch.float64)
    if expected is None:
        assert block.attn_mask is None
        return
    assert torch.equal(block.attn_mask, expected)  # static: built from input_resolution
    padded = torch.zeros(1, g.padded_height, g.padded_width, 1, dtype=torch.float64)
    assert torch.equal(block.get_attn_mask(padded), expected)  # dynamic: built from the padded map


def _torchvision_call(x, window, shift, heads, v2, gen):
    """Random weights for torchvision's functional shifted_window_attention, and its result."""
    c = x.shape[-1]
    n = window[0] * window[1]

    def randn(*shape):
        return torch.randn(*shape, generator=gen, dtype=torch.float64)

    weights = dict(qkv_weight=randn(3 * c, c) / c ** 0.5, proj_weight=randn(c, c) / c ** 0.5,
                   relative_position_bias=randn(1, heads, n, n), qkv_bias=randn(3 * c), proj_bias=randn(c),
                   logit_scale=math.log(10) + 0.3 * randn(heads, 1, 1) if v2 else None)
    out = tv.shifted_window_attention(x, window_size=list(window), num_heads=heads, shift_size=list(shift),
                                      training=False, **weights)
    return weights, out


@pytest.mark.parametrize("v2", [False, True], ids=["V1", "V2"])
@pytest.mark.parametrize("geometry", GEOMETRIES, ids=_geometry_id)
def test_reference_attention_matches_torchvisions_functional(geometry, v2):
    """torchvision's shifted_window_attention called directly: pad, then roll, its shift-only clamp, and for V2
    the cosine attention with the clamped logit scale and the key bias zeroed (done here by hand)."""
    (h, w), window, shift = geometry
    heads, head_dim = 2, 4
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(2, h, w, heads * head_dim, generator=gen, dtype=torch.float64)
    weights, expected = _torchvision_call(x, window, shift, heads, v2, gen)
    _, clamped_shift = clamp_window(h, w, window, shift, "shift_only")
    qkv_bias = weights["qkv_bias"].clone()
    scale = head_dim ** -0.5
    if v2:
        qkv_bias[heads * head_dim:2 * heads * head_dim] = 0

    def transform(t):  # per token and head: the cosine normalisation and logit scale of V2
        if not v2:
            return t
        q, k, v = t.unflatten(-1, (3, heads, head_dim)).unbind(-3)
        logit = torch.clamp(weights["logit_scale"], max=math.log(100.0)).exp().reshape(heads, 1)
        return torch.stack([F.normalize(q, dim=-1) * logit, F.normalize(k, dim=-1), v], dim=-3).flatten(-3)

    if v2:
        scale = 1.0
    qkv = transform(F.linear(x, weights["qkv_weight"], qkv_bias))
    out = reference.shifted_window_attention(qkv, heads, window, clamped_shift, pad_qkv=transform(qkv_bias),
                                             bias=weights["relative_position_bias"][0], scale=scale)
    actual = F.linear(out, weights["proj_weight"], weights["proj_bias"])
    assert relative_error(actual, expected) <= 1e-12


# --------------------------------------------------------------------------------------- compile and export
class GraphCounter:
    """A dynamo backend that counts the graphs it is given and runs them eagerly."""

    def __init__(self) -> None:
        self.graphs = 0

    def __call__(self, graph_module, example_inputs):
        self.graphs += 1
        return graph_module.forward


@pytest.fixture
def fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


# The other two families are traced by the resizing test below (and all four by torch.export).
@pytest.mark.parametrize("family", ["timm V2", "torchvision V1"])
def test_fullgraph_training_step_matches_eager(family, fresh_dynamo):
    """Forward and backward traced in one graph each (timm with its static mask)."""
    case = TINY[family]
    model = patch_quietly(case.model(torch.float32).train(), "cpp")
    x = case.inputs(torch.float32)
    expected, expected_grads = run(model, x, grad=True)
    counter = torch._dynamo.testing.CompileCounterWithBackend("aot_eager")
    actual, grads = run(torch.compile(model, fullgraph=True, backend=counter), x, grad=True)
    assert counter.frame_count == 1
    assert_close(actual, expected, torch.float32, "compiled outputs")
    assert_grads_close({k.removeprefix("_orig_mod."): v for k, v in grads.items()}, expected_grads, torch.float32,
                       "compiled")


def _graphs_over_sizes(model, eager, inputs) -> int:
    """Graphs dynamo compiles for ``model`` over the inputs (fullgraph), each result checked against eager."""
    torch._dynamo.reset()
    counter = GraphCounter()
    compiled = torch.compile(model, fullgraph=True, backend=counter)
    with torch.no_grad():
        for x in inputs:
            assert_close([compiled(x)], [eager(x)], torch.float32, f"at {tuple(x.shape)}")
    return counter.graphs


def _shifted_torchvision_block():
    # One shifted block: dynamo's dynamic-shape trace of torchvision's own attention takes seconds per block.
    return Case("block", "torchvision V2", lambda: tv.SwinTransformerBlockV2(16, 2, [4, 6], [2, 3]))


# Three sizes: the second makes dynamo recompile with dynamic shapes, the third must need no graph more.
RESIZABLE = {
    "timm, strict_img_size=False": (
        Case("timm", "timm V1", lambda: timm_model("timm V1", image=(20, 28), depths=(2,), heads=(2,),
                                                   strict_img_size=False)),
        [(2, 3, 20, 28), (2, 3, 36, 44), (2, 3, 28, 36)]),
    "torchvision block": (_shifted_torchvision_block(), [(2, 5, 7, 16), (2, 9, 11, 16), (2, 7, 9, 16)]),
}


@pytest.mark.parametrize("name", list(RESIZABLE))
def test_new_sizes_compile_no_more_graphs_than_unpatched(name, fresh_dynamo):
    case, shapes = RESIZABLE[name]
    model = case.model(torch.float32).eval()
    gen = torch.Generator().manual_seed(1)
    inputs = [torch.randn(shape, generator=gen) for shape in shapes]
    unpatched = _graphs_over_sizes(model, model, inputs)
    patched = patch_quietly(copy.deepcopy(model), "cpp")
    assert _graphs_over_sizes(patched, model, inputs) <= unpatched


def _export(model, x):
    try:
        return torch.export.export(model, (x,)), None
    except Exception as error:  # noqa: BLE001 - the reason is reported
        return None, f"{type(error).__name__}: {error}"


@pytest.mark.parametrize("family", FAMILIES)
def test_export_works_where_it_works_unpatched(family):
    case = TINY[family]
    model = case.model(torch.float32).eval()
    patched = patch_quietly(copy.deepcopy(model), "cpp")
    x = case.inputs(torch.float32, batch=2)
    program, error = _export(patched, x)
    if program is None:
        unpatched_program, unpatched_error = _export(model, x)
        assert unpatched_program is None, f"export fails on the patched model only: {error}"
        pytest.skip(f"torch.export fails on the unpatched {family} model too: {unpatched_error}")
    with torch.no_grad():
        with fused_calls("cpp") as counts:
            actual = program.module()(x)
        assert counts == [len(attention_blocks(model))]
        assert_close([actual], [model(x)], torch.float32, "exported")
