"""End to end, 3-D: torchvision's Video Swin and MONAI's SwinUNETR on volumes, patched by swin_kernels.patch against
themselves unpatched, and the 3-D attention core (fused cpp against the unfused reference), side by side, CPU.

Models (random weights, stochastic depth off; fp32, eager):

* torchvision ``swin3d_t`` (window 8x7x7, 12 blocks) on one 16-frame 112x112 clip (stages 8x28x28, 8x14x14,
  8x7x7, 8x4x4: 8 frames equal the window's depth, so no block shifts in depth; the third stage is one window, the
  last clamps its rows and columns to 4);
* MONAI ``SwinUNETR(spatial_dims=3)``, the whole network (Swin encoder and convolutional decoder; window 7, 8
  blocks) on one 1-channel 64³ and 96³ volume (stage 1: 32³ padded to 35³, or 48³ to 49³; the last stage clamps
  to one 4³ or 6³ window).

Passes: inference (eval, no grad) and a training step (forward, cross-entropy, backward, AdamW step). Both
contenders start from the same weights, see the same input, are checked against each other once (the first call:
largest difference relative to the largest unpatched value), then each call's peak memory is counted by the
allocator (benchmarks.memory: what one call allocates above what was live before it), then they are timed in
interleaved rounds (benchmarks.timing; medians). The attention core rows time ``shifted_window_attention`` alone
on the qkv volume of swin3d_t's first stage (window 8x7x7; the depth of 8 frames equals the window, so torchvision
drops the depth shift: (0, 3, 3)) and of SwinUNETR's first stage at 64³ with feature_size 48 (window 7x7x7 shifted
by 3, padded from 32 to 35), forward and forward+backward, cpp against the reference.

    python -m benchmarks.end_to_end_video [--rounds 5] [--feature-size 24] [--unetr-sizes 64,96] [--tiny]
                                          [--only swin3d,unetr,core] [--passes inference,"training step"]
                                          [--threads N]

``--tiny`` runs small shapes once (what make test runs, through benchmarks/test_end_to_end_video.py). Threads:
torch's choice, or 1 when the machine is already busy as the run starts (benchmarks.machine.busy_warning).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import statistics
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

import swin_kernels

from .machine import busy_warning, load_average
from .memory import format_bytes, peak_bytes
from .report import table
from .timing import interleaved_times

PASSES = ("inference", "training step")
KINDS = ("swin3d", "unetr", "core")


@dataclass(frozen=True)
class ModelCase:
    """One model on one input: ``library`` is "torchvision" (a SwinTransformer3d) or "monai" (a SwinUNETR)."""

    name: str
    library: str
    input_shape: tuple[int, ...]  # (B, C, D, H, W)
    classes: int
    options: tuple = ()  # builder keyword arguments, as (name, value) pairs

    def build(self) -> torch.nn.Module:
        options = dict(self.options)
        if self.library == "torchvision":
            from torchvision.models.video import swin_transformer as tv

            if options.pop("full", False):
                model = tv.swin3d_t(num_classes=self.classes)
            else:
                model = tv.SwinTransformer3d(num_classes=self.classes, **options)
            for module in model.modules():  # stochastic depth would draw differently per contender
                if type(module).__name__ == "StochasticDepth":
                    module.p = 0.0
            return model
        from monai.networks.nets import SwinUNETR

        return SwinUNETR(in_channels=self.input_shape[1], out_channels=self.classes, spatial_dims=3, **options)


def swin3d_t_case(frames: int = 16, size: int = 112) -> ModelCase:
    return ModelCase(f"torchvision swin3d_t, 1x3x{frames}x{size}x{size}", "torchvision", (1, 3, frames, size, size),
                     400, (("full", True),))


def unetr_case(size: int, feature_size: int = 24) -> ModelCase:
    return ModelCase(f"MONAI SwinUNETR 3-D (feature_size {feature_size}), 1x1x{size}³", "monai",
                     (1, 1, size, size, size), 14, (("feature_size", feature_size),))


TINY_SWIN3D = ModelCase("tiny torchvision SwinTransformer3d (quick mode)", "torchvision", (1, 3, 4, 40, 36), 5,
                        (("patch_size", [2, 4, 4]), ("embed_dim", 16), ("depths", [2, 2]), ("num_heads", [2, 2]),
                         ("window_size", [2, 4, 4]), ("stochastic_depth_prob", 0.0)))
TINY_UNETR = ModelCase("tiny MONAI SwinUNETR 3-D (quick mode)", "monai", (1, 1, 32, 32, 64), 2,
                       (("feature_size", 12), ("depths", (2, 2, 2, 2)), ("num_heads", (1, 1, 2, 2)),
                        ("window_size", (2, 7, 5))))


@dataclass(frozen=True)
class CoreCase:
    """The attention core on one qkv volume (B, D, H, W, 3C)."""

    name: str
    sizes: tuple[int, int, int]
    channels: int
    heads: int
    window: tuple[int, int, int]
    shift: tuple[int, int, int]


CORE_CASES = (
    CoreCase("swin3d_t stage 1 (16x112²)", (8, 28, 28), 96, 3, (8, 7, 7), (0, 3, 3)),
    CoreCase("SwinUNETR stage 1 (64³, feature_size 48)", (32, 32, 32), 48, 3, (7, 7, 7), (3, 3, 3)),
)
TINY_CORE = (CoreCase("tiny core (quick mode)", (4, 10, 9), 16, 2, (2, 4, 4), (1, 2, 2)),)


@dataclass
class Row:
    """One measured pass: two contenders' median seconds and peak bytes, and their difference."""

    what: str
    pass_name: str
    contenders: tuple[str, str]  # (baseline, contender)
    median_s: dict[str, float] = field(default_factory=dict)
    peak: dict[str, int] = field(default_factory=dict)
    difference: float = 0.0
    rounds: int = 0
    blocks_patched: int | None = None

    @property
    def speedup(self) -> float:
        base, other = self.contenders
        return self.median_s[base] / self.median_s[other]

    @property
    def memory_ratio(self) -> float:
        base, other = self.contenders
        return self.peak[other] / self.peak[base] if self.peak.get(base) else float("nan")


def _relative_difference(actual: torch.Tensor, expected: torch.Tensor) -> float:
    scale = expected.detach().double().abs().max().item() or 1.0
    return (actual.detach().double() - expected.detach().double()).abs().max().item() / scale


# ------------------------------------------------------------------------------------------ whole models
CPU = torch.device("cpu")


def _autocast(device: torch.device):
    """bf16 autocast on a GPU (what a GPU user runs), nothing on the CPU (fp32)."""
    if device.type == "cuda":
        return torch.autocast("cuda", torch.bfloat16)
    return contextlib.nullcontext()


def build_models(case: ModelCase, seed: int = 0, device: torch.device = CPU) -> dict[str, torch.nn.Module]:
    """The unpatched model and a patched copy with the same weights (bias tables drawn like the official init)."""
    torch.manual_seed(seed)
    model = case.build().to(device)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("relative_position_bias_table"):
                p.normal_(std=0.02)
    return {"unpatched": model, "patched": swin_kernels.patch(copy.deepcopy(model))}


def model_inputs(case: ModelCase, seed: int = 1, device: torch.device = CPU):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(case.input_shape, generator=gen)
    if case.library == "torchvision":
        labels = torch.randint(0, case.classes, (case.input_shape[0],), generator=gen)
    else:  # a label per voxel
        labels = torch.randint(0, case.classes, (case.input_shape[0], *case.input_shape[2:]), generator=gen)
    return x.to(device), labels.to(device)


def pass_callable(model: torch.nn.Module, pass_name: str, device: torch.device = CPU):
    """A call running one pass, returning the output (the training step's from before its update)."""
    model.train(pass_name != "inference")
    if pass_name == "inference":
        def infer(x, labels):
            with torch.no_grad(), _autocast(device):
                return model(x)
        return infer
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def train_step(x, labels):
        optimizer.zero_grad(set_to_none=True)
        with _autocast(device):
            out = model(x)
        F.cross_entropy(out.float(), labels).backward()
        optimizer.step()
        return out.detach()
    return train_step


@dataclass
class Prepared:
    """Two contenders ready to run one pass on the same arguments, after one checked call each."""

    what: str
    pass_name: str
    contenders: tuple[str, str]  # (baseline, fused)
    calls: dict
    args: tuple
    difference: float  # largest |fused - baseline| of the first call over the largest |baseline|
    blocks_patched: int | None = None


def prepare_model(case: ModelCase, pass_name: str, device: torch.device = CPU) -> Prepared:
    models = build_models(case, device=device)
    args = model_inputs(case, device=device)
    calls = {name: pass_callable(model, pass_name, device) for name, model in models.items()}
    first = {name: call(*args) for name, call in calls.items()}  # the check; also the warm-up
    return Prepared(case.name, pass_name, ("unpatched", "patched"), calls, args,
                    _relative_difference(first["patched"], first["unpatched"]),
                    sum(swin_kernels.patches.is_patched(m) for m in models["patched"].modules()))


def measure(prepared: Prepared, rounds: int, progress=None, device: torch.device = CPU) -> Row:
    """Peak memory of one call each, then ``rounds`` interleaved timed rounds."""
    p = prepared
    row = Row(p.what, p.pass_name, p.contenders, rounds=rounds, difference=p.difference,
              blocks_patched=p.blocks_patched)
    for name in p.contenders:
        row.peak[name] = peak_bytes(p.calls[name], p.args, device)

    def report(r):
        if progress is not None:
            progress(f"  {p.what} {p.pass_name}: round {r}/{rounds}")

    samples = interleaved_times([(p.calls[name], lambda: p.args) for name in p.contenders], rounds,
                                device, on_round=report)
    row.median_s = {name: statistics.median(times) for name, times in zip(p.contenders, samples)}
    return row


# ------------------------------------------------------------------------------------------ attention core
def core_inputs(case: CoreCase, seed: int = 0, device: torch.device = CPU):
    """(qkv, pad_qkv, bias, grad_out) of one core call: the qkv volume a block's Linear gives, its bias as the
    padded tokens' qkv, a relative position bias of unit variance (heads, N, N)."""
    gen = torch.Generator().manual_seed(seed)
    tokens = case.window[0] * case.window[1] * case.window[2]
    qkv = torch.randn(1, *case.sizes, 3 * case.channels, generator=gen)
    pad_qkv = torch.randn(3 * case.channels, generator=gen) * 0.1
    bias = torch.randn(case.heads, tokens, tokens, generator=gen)
    grad_out = torch.randn(1, *case.sizes, case.channels, generator=gen)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32  # what a GPU runs: bf16
    qkv, pad_qkv, bias, grad_out = (t.to(device, dtype) for t in (qkv, pad_qkv, bias, grad_out))
    return qkv.requires_grad_(), pad_qkv.requires_grad_(), bias.requires_grad_(), grad_out


def core_callable(case: CoreCase, backend: str, pass_name: str, inputs):
    qkv, pad_qkv, bias, grad_out = inputs
    scale = (case.channels // case.heads) ** -0.5

    def forward():
        return swin_kernels.shifted_window_attention(qkv, case.heads, case.window, case.shift, pad_qkv=pad_qkv,
                                                     bias=bias, scale=scale, backend=backend)
    if pass_name == "inference":
        def infer():
            with torch.no_grad():
                return forward()
        return infer

    def forward_backward():  # pad_qkv gets no gradient where nothing is padded
        return torch.autograd.grad(forward(), (qkv, pad_qkv, bias), grad_out, allow_unused=True)
    return forward_backward


def prepare_core(case: CoreCase, pass_name: str, device: torch.device = CPU) -> Prepared:
    inputs = core_inputs(case, device=device)
    fused = "triton" if device.type == "cuda" else "cpp"
    calls = {backend: core_callable(case, backend, pass_name, inputs) for backend in ("reference", fused)}
    first = {name: call() for name, call in calls.items()}
    if pass_name == "inference":
        difference = _relative_difference(first[fused], first["reference"])
    else:
        difference = max(_relative_difference(a, b) for a, b in zip(first[fused], first["reference"])
                         if b is not None)
    what = (f"attention core, {case.name}: window {'x'.join(map(str, case.window))}, shift {case.shift}, "
            f"{case.heads} heads of {case.channels // case.heads}")
    return Prepared(what, pass_name, ("reference", fused), calls, (), difference)


# ------------------------------------------------------------------------------------------ run and report
def model_cases(tiny: bool, feature_size: int = 24, unetr_sizes=(64, 96)) -> dict[str, list[ModelCase]]:
    if tiny:
        return {"swin3d": [TINY_SWIN3D], "unetr": [TINY_UNETR]}
    return {"swin3d": [swin3d_t_case()], "unetr": [unetr_case(size, feature_size) for size in unetr_sizes]}


def run(tiny: bool = False, rounds: int = 5, feature_size: int = 24, kinds=KINDS, passes=PASSES,
        progress=None, unetr_sizes=(64, 96), device: torch.device = CPU) -> list[Row]:
    """Every row; on a CUDA ``device`` the models run under bf16 autocast and the core in bf16, triton against the
    reference (what ``make gpu-check`` measures)."""
    rows = []
    cases = model_cases(tiny, feature_size, unetr_sizes)
    for kind in kinds:
        if kind == "core":
            for case in TINY_CORE if tiny else CORE_CASES:
                for pass_name in passes:
                    if progress is not None:
                        progress(f"{case.name} core {pass_name}")
                    rows.append(measure(prepare_core(case, pass_name, device), rounds, progress, device))
            continue
        for case in cases[kind]:
            for pass_name in passes:
                if progress is not None:
                    progress(f"{case.name} {pass_name}")
                rows.append(measure(prepare_model(case, pass_name, device), rounds, progress, device))
    return rows


def markdown(rows: list[Row]) -> str:
    header = ["model / call", "pass", "rounds", "baseline", "baseline ms", "fused ms", "speed-up", "baseline peak",
              "fused peak", "memory ratio", "max rel. difference"]
    body = []
    for r in rows:
        base, other = r.contenders
        body.append([r.what + (f" ({r.blocks_patched} blocks patched)" if r.blocks_patched else ""),
                     "forward+backward" if r.pass_name != "inference" and base == "reference" else r.pass_name,
                     str(r.rounds), base, f"{1e3 * r.median_s[base]:.1f}", f"{1e3 * r.median_s[other]:.1f}",
                     f"{r.speedup:.2f}x", format_bytes(r.peak[base]), format_bytes(r.peak[other]),
                     f"{r.memory_ratio:.2f}", f"{r.difference:.1e}"])
    return table(header, body)


def report_section(tiny: bool = False, rounds: int = 5, progress=None) -> str:
    """Markdown for a report: the table, with the machine's thread count and the time it took."""
    began = time.monotonic()
    rows = run(tiny=tiny, rounds=rounds, progress=progress)
    return "\n\n".join([
        "## End-to-end 3-D: Video Swin and SwinUNETR volumes, patched vs unpatched",
        f"CPU, {torch.get_num_threads()} torch thread(s), fp32 eager. Models: the unpatched library model against "
        "`swin_kernels.patch(model)` (backend auto: cpp); attention core: `shifted_window_attention` on the cpp "
        "backend against the reference. Medians of interleaved rounds after a checked call; peak memory is what "
        "one call allocates above what was live before it; the memory ratio is fused / baseline.",
        markdown(rows), f"_Measured in {time.monotonic() - began:.0f} s._"])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--feature-size", type=int, default=24, help="SwinUNETR's feature_size (24 or 48)")
    parser.add_argument("--unetr-sizes", default="64,96", help="SwinUNETR's cubic input sizes (multiples of 32)")
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--only", default=",".join(KINDS), help=f"comma-separated subset of {', '.join(KINDS)}")
    parser.add_argument("--passes", default=",".join(PASSES), help="comma-separated subset of the passes")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's choice, or 1 when the machine is already busy)")
    args = parser.parse_args(argv)
    busy = busy_warning()
    if args.threads:
        torch.set_num_threads(args.threads)
    elif busy:
        torch.set_num_threads(1)
        print(f"warning: {busy}; this run therefore uses 1 torch thread (choose with --threads)")
    from tools.torchvision_compat import make_torchvision_importable

    from .progress import Progress

    make_torchvision_importable()
    kinds = [k.strip() for k in args.only.split(",") if k.strip()]
    passes = [p.strip() for p in args.passes.split(",") if p.strip()]
    progress = Progress()
    sizes = tuple(int(v) for v in args.unetr_sizes.split(",") if v.strip())
    rows = run(args.tiny, args.rounds, args.feature_size, kinds, passes, progress, sizes)
    print(f"CPU, {torch.get_num_threads()} torch thread(s), fp32 eager, took {progress.elapsed:.0f} s; load average "
          f"(1/5/15 min) at the end {load_average()}")
    print(markdown(rows))


if __name__ == "__main__":
    main()
