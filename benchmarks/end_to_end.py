"""End to end: a whole Swin-T image classifier (HF transformers) patched by swin_kernels.patch, against itself unpatched.

Two passes at 224x224: inference (eval, no grad) and a training step (forward, cross-entropy, backward, AdamW
step). fp32 on the CPU, bf16 autocast on a GPU. Both models start from the same weights and see the same inputs;
each pass is checked once (patched against unpatched), then both are warmed up by a call whose peak memory the
allocator counts (benchmarks.memory), then timed in interleaved rounds. Throughput is batch / median time.

Peak memory is what a call allocates above what was live when it began. The patched model's inference keeps
one thing between calls that this does not see: the concatenated q/k/v weights it caches while no gradient
flows; the report states its size next to the peak.
"""

from __future__ import annotations

import copy
import statistics
import time
from contextlib import nullcontext
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

import swin_kernels
from swin_kernels import backends

from .memory import format_bytes, peak_bytes
from .report import table
from .timing import interleaved_times

CONTENDERS = ("unpatched", "patched")
PASSES = ("inference", "training step")


@dataclass(frozen=True)
class ModelSpec:
    name: str
    image: int
    embed_dim: int
    depths: tuple[int, ...]
    heads: tuple[int, ...]
    window: int
    labels: int = 1000

    def config(self):
        from transformers import SwinConfig

        return SwinConfig(image_size=self.image, embed_dim=self.embed_dim, depths=list(self.depths),
                          num_heads=list(self.heads), window_size=self.window, num_labels=self.labels,
                          drop_path_rate=0.0)


SWIN_T = ModelSpec("Swin-T", 224, 96, (2, 2, 6, 2), (3, 6, 12, 24), 7)
TINY = ModelSpec("tiny Swin (quick mode)", 64, 16, (2, 2), (2, 4), 4, labels=10)


@dataclass
class Setting:
    """Where and how a run measures: device, autocast dtype, batch per pass and timed rounds."""

    device: torch.device
    autocast: torch.dtype | None
    batch: dict[str, int]
    rounds: dict[str, int]

    @classmethod
    def for_run(cls, full: bool, tiny: bool = False) -> "Setting":
        if tiny:
            device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
            return cls(device, torch.bfloat16 if device.type == "cuda" else None, dict.fromkeys(PASSES, 2),
                       dict.fromkeys(PASSES, 1))
        if torch.cuda.is_available():
            batch = {"inference": 128, "training step": 64}
            return cls(torch.device("cuda"), torch.bfloat16, batch, dict.fromkeys(PASSES, 20 if full else 10))
        # CPU: about 1 s per inference round and 5-7 s per training round at batch 8 on 2 cores
        batch = {"inference": 32 if full else 8, "training step": 16 if full else 8}
        return cls(torch.device("cpu"), None, batch, {"inference": 7, "training step": 5})

    @property
    def precision(self) -> str:
        return "bf16 autocast" if self.autocast else "fp32"

    def autocast_context(self):
        if self.autocast is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast)


@dataclass
class PassResult:
    pass_name: str
    batch: int
    median_s: dict[str, float] = field(default_factory=dict)
    peak: dict[str, int] = field(default_factory=dict)
    difference: float = 0.0  # patched vs unpatched, relative to the largest unpatched value
    rounds: int = 0
    cached_qkv_bytes: int = 0  # held by the patched model between inference calls

    def images_per_s(self, contender: str) -> float:
        return self.batch / self.median_s[contender]


def build_models(spec: ModelSpec, device: torch.device, seed: int = 0) -> dict[str, torch.nn.Module]:
    """The unpatched classifier and a patched copy with the same weights (bias tables drawn like the official init)."""
    from transformers import SwinForImageClassification

    torch.manual_seed(seed)
    model = SwinForImageClassification(spec.config())
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("relative_position_bias_table"):
                p.normal_(std=0.02)
    model = model.to(device)
    return {"unpatched": model, "patched": swin_kernels.patch(copy.deepcopy(model))}


def inputs(spec: ModelSpec, batch: int, device: torch.device, seed: int = 1):
    gen = torch.Generator().manual_seed(seed)
    pixels = torch.randn(batch, 3, spec.image, spec.image, generator=gen)
    labels = torch.randint(0, spec.labels, (batch,), generator=gen)
    return pixels.to(device), labels.to(device)


def pass_callable(model, pass_name: str, setting: Setting):
    """A call that runs one pass and returns its logits (the training step's from before its update)."""
    if pass_name == "inference":
        model.eval()

        def infer(pixels, labels):
            with torch.no_grad(), setting.autocast_context():
                return model(pixel_values=pixels).logits
        return infer

    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def train_step(pixels, labels):
        optimizer.zero_grad(set_to_none=True)
        with setting.autocast_context():
            logits = model(pixel_values=pixels).logits
            loss = F.cross_entropy(logits.float(), labels)
        loss.backward()
        optimizer.step()
        return logits.detach()
    return train_step


def _relative_difference(actual: torch.Tensor, expected: torch.Tensor) -> float:
    scale = expected.double().abs().max().item() or 1.0
    return (actual.double() - expected.double()).abs().max().item() / scale


@dataclass
class PreparedPass:
    """Both contenders ready to run one pass on the same inputs, after one checked call each."""

    pass_name: str
    batch: int
    models: dict[str, torch.nn.Module]
    calls: dict
    args: tuple
    difference: float  # patched vs unpatched logits of the first call, relative to the largest unpatched logit


def prepare_pass(spec: ModelSpec, pass_name: str, setting: Setting) -> PreparedPass:
    models = build_models(spec, setting.device)
    batch = setting.batch[pass_name]
    args = inputs(spec, batch, setting.device)
    calls = {name: pass_callable(model, pass_name, setting) for name, model in models.items()}
    first = {name: call(*args) for name, call in calls.items()}  # the check, and the warm-up of lazy state
    return PreparedPass(pass_name, batch, models, calls, args, _relative_difference(first["patched"],
                                                                                  first["unpatched"]))


def measure_pass(spec: ModelSpec, pass_name: str, setting: Setting, progress=None) -> PassResult:
    """Check, then measure both contenders side by side on one pass."""
    prepared = prepare_pass(spec, pass_name, setting)
    rounds = setting.rounds[pass_name]
    result = PassResult(pass_name, prepared.batch, rounds=rounds, difference=prepared.difference)
    for name, call in prepared.calls.items():
        result.peak[name] = peak_bytes(call, prepared.args, setting.device)

    def report_round(r: int) -> None:
        if progress is not None:
            progress(f"  {spec.name} {pass_name} B{prepared.batch}: round {r}/{rounds}")

    samples = interleaved_times([(prepared.calls[name], lambda: prepared.args) for name in CONTENDERS], rounds,
                                setting.device, on_round=report_round)
    result.median_s = {name: statistics.median(times) for name, times in zip(CONTENDERS, samples)}
    if pass_name == "inference":
        result.cached_qkv_bytes = cached_qkv_bytes(prepared.models["patched"])
    return result


def cached_qkv_bytes(model) -> int:
    """Bytes of the q/k/v weight concatenations a patched model keeps between inference calls."""
    total = 0
    for module in model.modules():
        for name in ("_swin_kernels_qkv_weight", "_swin_kernels_qkv_bias"):
            cache = vars(module).get(name)
            value = getattr(cache, "_value", None)
            if value is not None:
                total += value.numel() * value.element_size()
    return total


def run(full: bool = False, tiny: bool = False, progress=None) -> tuple[ModelSpec, Setting, list[PassResult]]:
    spec = TINY if tiny else SWIN_T
    setting = Setting.for_run(full, tiny)
    results = []
    for pass_name in PASSES:
        if progress is not None:
            progress(f"end-to-end {spec.name} {pass_name}, batch {setting.batch[pass_name]}, {setting.precision}")
        results.append(measure_pass(spec, pass_name, setting, progress))
    return spec, setting, results


def auto_backend(setting: Setting, spec: ModelSpec) -> str:
    """The backend 'auto' picks for this model's attention calls (its first stage)."""
    head_dim = spec.embed_dim // spec.heads[0]
    request = backends.Request("attention", setting.device, setting.autocast or torch.float32, spec.window, head_dim)
    return backends.resolve("auto", request).__name__.rsplit(".", 1)[-1]


def report_section(full: bool, progress=None) -> str:
    """Markdown for results/REPORT.md: Swin-T patched vs unpatched, inference and training step."""
    began = time.monotonic()
    spec, setting, results = run(full=full, progress=progress)
    rows = []
    for r in results:
        speedup = r.median_s["unpatched"] / r.median_s["patched"]
        memory = r.peak["patched"] / r.peak["unpatched"] if r.peak["unpatched"] else float("nan")
        cached = f" (+{format_bytes(r.cached_qkv_bytes)} cached q/k/v)" if r.cached_qkv_bytes else ""
        rows.append([r.pass_name, str(r.batch), str(r.rounds), f"{r.images_per_s('unpatched'):.2f}",
                     f"{r.images_per_s('patched'):.2f}", f"{speedup:.2f}x", format_bytes(r.peak["unpatched"]),
                     format_bytes(r.peak["patched"]) + cached, f"{memory:.2f}", f"{r.difference:.1e}"])
    header = ["pass", "batch", "rounds", "unpatched images/s", "patched images/s", "speed-up", "unpatched peak",
              "patched peak", "memory ratio", "max difference"]
    threads = torch.get_num_threads()
    device = torch.cuda.get_device_name() if setting.device.type == "cuda" else f"CPU, {threads} torch thread(s)"
    return "\n\n".join([
        f"## End-to-end: {spec.name} image classification ({spec.image}x{spec.image}), patched vs unpatched",
        f"Hugging Face `SwinForImageClassification` (random weights), unpatched against `swin_kernels.patch(model)` "
        f"(backend `auto`, here `{auto_backend(setting, spec)}`), {setting.precision} on {device}. Inference: eval, "
        f"no grad. Training step: forward, cross-entropy, backward, AdamW step. Medians of interleaved rounds "
        "(count in the table) after a checked call and a memory-counting warm-up; peak memory is what one call "
        "allocates above what was live before it; the patched model also keeps its concatenated q/k/v weights "
        "between inference calls (shown in brackets). \"max difference\": patched against unpatched logits of the "
        "first call (before any optimizer step), relative to the largest unpatched logit.",
        table(header, rows),
        f"_Measured in {time.monotonic() - began:.0f} s._",
    ])
