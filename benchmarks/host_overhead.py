"""Host-side cost of one patched Swin block call against the same block unpatched, without a GPU.

What a block call costs the CPU (Python, torch's op dispatch, the kernel launchers) is what a GPU waits for when
its own work per call is small (late Swin stages, small batches). Measured here on tiny CPU inputs (one image, a
14x14 map, 32 channels), where every torch op costs about its dispatch, with the Triton backend's kernels
replaced by recorders: a patched block then costs its Python, the torch ops around the fused op, the dispatcher
and the launcher code up to each launch, and nothing of the kernels themselves (nor Triton's own launch call,
which the GPU profile of ``make gpu-check`` times). The unpatched block pays its torch ops' dispatch the same way.

Per family (HF transformers V1/V2, timm V1/V2, torchvision V1/V2): microseconds per block call (the smallest of
several rounds, in this thread's CPU time: on a shared machine the minimum is the cost, the rest is other load),
torch ops and Triton launches per call; then a breakdown of the fused call (dispatch decision, the functional API's checks, the
custom op's dispatcher, the launcher). Run as ``python -m benchmarks.host_overhead [--json FILE]``: it re-runs
itself in a fresh interpreter with TRITON_INTERPRET=1 (set before triton is imported) and one CPU thread.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass

FAMILIES = ("HF V1", "HF V2", "timm V1", "timm V2", "torchvision V1", "torchvision V2")
BLOCKS = {"HF V1": "SwinLayer", "HF V2": "Swinv2Layer", "timm V1": "SwinTransformerBlock",
          "timm V2": "SwinTransformerV2Block", "torchvision V1": "SwinTransformerBlock",
          "torchvision V2": "SwinTransformerBlockV2"}
IMAGE, EMBED, HEADS, WINDOW = 56, 32, 2, 7  # patch 4: a 14x14 map, 2x2 windows of 7x7, shift 3 in block 2


@dataclass
class BlockCost:
    family: str
    block: str
    shifted: bool
    unpatched_us: float
    patched_us: float
    unpatched_ops: int  # torch ops per call (on a GPU: about one kernel launch each)
    patched_ops: int  # torch ops per call, the fused op counted once
    patched_launches: int  # Triton kernel launches per call

    @property
    def ratio(self) -> float:
        return self.patched_us / self.unpatched_us


# ----------------------------------------------------------------------------------------- the models
def _model(family: str):
    import torch

    torch.manual_seed(0)
    if family.startswith("HF"):
        import transformers as tf

        v2 = family.endswith("V2")
        config = (tf.Swinv2Config if v2 else tf.SwinConfig)(image_size=IMAGE, patch_size=4, embed_dim=EMBED,
                                                            depths=[2], num_heads=[HEADS], window_size=WINDOW)
        return (tf.Swinv2Model if v2 else tf.SwinModel)(config)
    if family.startswith("timm"):
        import timm

        name = "swinv2_tiny_window8_256" if family.endswith("V2") else "swin_tiny_patch4_window7_224"
        return timm.create_model(name, pretrained=False, img_size=IMAGE, embed_dim=EMBED, depths=(2,),
                                 num_heads=(HEADS,), window_size=WINDOW, num_classes=0, drop_path_rate=0.0)
    from torchvision.models import swin_transformer as tv

    v2 = dict(block=tv.SwinTransformerBlockV2, downsample_layer=tv.PatchMergingV2) if family.endswith("V2") else {}
    return tv.SwinTransformer(patch_size=[4, 4], embed_dim=EMBED, depths=[2], num_heads=[HEADS],
                              window_size=[WINDOW, WINDOW], stochastic_depth_prob=0.0, num_classes=0, **v2)


def _block_calls(model, block_class: str, pixels):
    """[(block, args, kwargs)] of each block of ``block_class`` as the model calls it on ``pixels``."""
    import torch

    blocks = [m for m in model.modules() if type(m).__name__ == block_class]
    seen = {}

    def record(module, args, kwargs):
        seen.setdefault(id(module), (args, kwargs))

    handles = [b.register_forward_pre_hook(record, with_kwargs=True) for b in blocks]
    try:
        with torch.no_grad():
            model(pixels)
    finally:
        for handle in handles:
            handle.remove()
    return [(b, *seen[id(b)]) for b in blocks]


# -------------------------------------------------------------------------------------- measuring
class LaunchRecorder:
    """Stands in for a Triton kernel: ``kernel[grid](...)`` counts a launch and runs nothing."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.launches = 0

    def __getitem__(self, grid):
        return self._launch

    def _launch(self, *args, **kwargs) -> None:
        self.launches += 1


@contextmanager
def recorded_triton_launches():
    """Every Triton kernel of the triton backend replaced by a LaunchRecorder; yields the recorders."""
    import triton  # noqa: F401

    from swin_kernels.ops.triton import library  # noqa: F401  (imports every kernel module)

    jit_types = ("JITFunction", "InterpretedFunction")
    modules = [m for name, m in list(sys.modules.items()) if name.startswith("swin_kernels.ops.triton") and m]
    stand_ins, replaced = {}, []
    for module in modules:
        for attr, value in list(vars(module).items()):
            if type(value).__name__ in jit_types:
                recorder = stand_ins.setdefault(id(value), LaunchRecorder(attr))
                replaced.append((module, attr, value))
                setattr(module, attr, recorder)
    try:
        yield list(stand_ins.values())
    finally:
        for module, attr, value in replaced:
            setattr(module, attr, value)


def per_call_us(call, calls: int = 300, rounds: int = 7) -> float:
    """Microseconds per call: the fastest of ``rounds`` rounds of ``calls`` calls (after a warm-up)."""
    for _ in range(20):
        call()
    best = float("inf")
    for _ in range(rounds):
        began = time.thread_time()
        for _ in range(calls):
            call()
        best = min(best, (time.thread_time() - began) / calls)
    return best * 1e6


def interleaved_us(calls: dict, repeats: int = 300, rounds: int = 9) -> dict[str, float]:
    """per_call_us of several calls, their rounds interleaved (load from elsewhere falls on each alike)."""
    for call in calls.values():
        for _ in range(20):
            call()
    best = dict.fromkeys(calls, float("inf"))
    for _ in range(rounds):
        for name, call in calls.items():
            began = time.thread_time()
            for _ in range(repeats):
                call()
            best[name] = min(best[name], (time.thread_time() - began) / repeats)
    return {name: value * 1e6 for name, value in best.items()}


def op_count(call) -> int:
    """torch ops one call dispatches (a custom op counts once: what runs inside it is not seen by the mode)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Count(TorchDispatchMode):
        ops = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.ops += 1
            return func(*args, **(kwargs or {}))

    counter = Count()
    with counter:
        call()
    return counter.ops


def measure_blocks(families=FAMILIES, backend: str = "triton") -> list[BlockCost]:
    import torch

    import swin_kernels

    rows = []
    for family in families:
        model = _model(family).eval()
        patched = swin_kernels.patch(copy.deepcopy(model), backend=backend)
        pixels = torch.randn(1, 3, IMAGE, IMAGE)
        with recorded_triton_launches() as recorders:
            plain_calls = _block_calls(model, BLOCKS[family], pixels)
            fused_calls = _block_calls(patched, BLOCKS[family], pixels)
            for index, ((plain, p_args, p_kwargs), (fused, f_args, f_kwargs)) in enumerate(
                    zip(plain_calls, fused_calls)):
                def unpatched_call(b=plain, a=p_args, k=p_kwargs):
                    return b(*a, **k)

                def patched_call(b=fused, a=f_args, k=f_kwargs):
                    return b(*a, **k)

                with torch.no_grad():
                    times = interleaved_us({"unpatched": unpatched_call, "patched": patched_call})
                    before = sum(r.launches for r in recorders)
                    patched_call()
                    launches = sum(r.launches for r in recorders) - before
                    ops = op_count(unpatched_call), op_count(patched_call)
                rows.append(BlockCost(family, BLOCKS[family], index % 2 == 1, times["unpatched"], times["patched"],
                                      ops[0], ops[1], launches))
    return rows


def fused_call_breakdown(backend: str = "triton") -> dict[str, float]:
    """Microseconds of the pieces of one fused attention call (Swin-T-like: 14x14 map, window 7, shift 3)."""
    import torch

    from swin_kernels import backends, functional
    from swin_kernels.backends import Request
    from swin_kernels.geometry import WindowGeometry

    qkv = torch.randn(1, 14, 14, 3 * EMBED)
    pad, bias = torch.randn(3 * EMBED), torch.randn(HEADS, WINDOW * WINDOW, WINDOW * WINDOW)
    request = Request("attention", qkv.device, qkv.dtype, (WINDOW, WINDOW), EMBED // HEADS)
    geometry = WindowGeometry(14, 14, WINDOW, 3)
    impl = backends.resolve(backend, request)
    scale = (EMBED // HEADS) ** -0.5
    pieces = {
        "functional.shifted_window_attention (all of it)": lambda: functional.shifted_window_attention(
            qkv, HEADS, WINDOW, 3, pad_qkv=pad, bias=bias, backend=backend),
        "backend's window_attention (op dispatch + launcher)": lambda: impl.window_attention(
            qkv, pad, bias, HEADS, geometry, scale, 0.0),
        "backends.resolve (dispatch decision)": lambda: backends.resolve(backend, request),
        "WindowGeometry (construction and checks)": lambda: WindowGeometry(14, 14, WINDOW, 3),
    }
    if backend == "triton":
        from swin_kernels.ops.triton import fp32_precision, library
        from swin_kernels.ops.triton.attention_forward import window_attention_forward

        precision = fp32_precision()  # what the backend's own call above takes
        plan = library._plan(qkv, HEADS, geometry, precision)
        pieces["launcher only (window_attention_forward, no dispatcher)"] = lambda: window_attention_forward(
            qkv, pad, bias, None, HEADS, geometry, scale, 0.0, plan)
        pieces["custom op called directly (dispatcher + launcher)"] = lambda: library.attention_fwd(
            qkv, pad, bias, None, HEADS, [WINDOW, WINDOW], [3, 3], False, scale, 0.0, precision)
    with recorded_triton_launches(), torch.no_grad():
        return {name: per_call_us(call) for name, call in pieces.items()}


# ------------------------------------------------------------------------------------------ running
def run_here(families=FAMILIES) -> dict:
    import torch

    torch.set_num_threads(1)
    blocks = measure_blocks(families)
    return {"blocks": [dict(asdict(row), ratio=row.ratio) for row in blocks],
            "breakdown": fused_call_breakdown(), "torch": torch.__version__}


def run_isolated(families=FAMILIES, timeout: float = 900) -> dict:
    """run_here in a fresh interpreter with TRITON_INTERPRET=1 and one thread; returns its JSON."""
    env = dict(os.environ, TRITON_INTERPRET="1", OMP_NUM_THREADS="1")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    done = subprocess.run([sys.executable, "-m", "benchmarks.host_overhead", "--here", "--families", *families],
                          capture_output=True, text=True, env=env, cwd=root, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"host overhead run failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def markdown(result: dict) -> str:
    lines = ["| family | block | shifted | unpatched | patched | patched / unpatched | torch ops unpatched | "
             "torch ops patched | Triton launches |", "|---|---|---|---|---|---|---|---|---|"]
    for row in result["blocks"]:
        lines.append(f"| {row['family']} | {row['block']} | {'yes' if row['shifted'] else 'no'} | "
                     f"{row['unpatched_us']:.0f} µs | {row['patched_us']:.0f} µs | {row['ratio']:.2f} | "
                     f"{row['unpatched_ops']} | {row['patched_ops']} | {row['patched_launches']} |")
    lines += ["", "| piece of the fused call | µs |", "|---|---|"]
    lines += [f"| {name} | {value:.1f} |" for name, value in result["breakdown"].items()]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--here", action="store_true", help="measure in this interpreter (TRITON_INTERPRET=1 set)")
    parser.add_argument("--families", nargs="+", default=list(FAMILIES), choices=FAMILIES)
    parser.add_argument("--json", help="write the result here")
    args = parser.parse_args(argv)
    if args.here:
        from tools.torchvision_compat import make_torchvision_importable

        make_torchvision_importable()
        print(json.dumps(run_here(tuple(args.families))))
        return 0
    result = run_isolated(tuple(args.families))
    print(markdown(result))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
