"""End to end: whole Swin-T image classifiers patched by swin_kernels.patch, against themselves unpatched.

Three implementations: Hugging Face transformers ``SwinForImageClassification``, timm
``swin_tiny_patch4_window7_224`` and torchvision ``swin_t()`` (random weights, stochastic depth off so both
contenders compute the same thing). Two passes at 224x224: inference (eval, no grad) and a training step
(forward, cross-entropy, backward, AdamW step), each eager and under ``torch.compile`` (inductor; the quick
mode's tiny models are traced with "aot_eager" instead, since inductor's CPU code generation takes minutes).
fp32 and bf16 autocast on the CPU, bf16 autocast on a GPU. Both contenders start from the same weights and see the same inputs;
each pass is checked once (patched against unpatched; for compiled ones this call compiles), then both are
warmed up by a call whose peak memory the allocator counts (benchmarks.memory), then timed in interleaved
rounds. Throughput is batch / median time.

Peak memory is what a call allocates above what was live when it began (a patched model keeps nothing between
calls: HF's q/k/v weights are concatenated per call).
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
MODES = ("eager", "compiled")
LIBRARIES = ("transformers", "timm", "torchvision")


@dataclass(frozen=True)
class ModelSpec:
    name: str
    image: int
    embed_dim: int
    depths: tuple[int, ...]
    heads: tuple[int, ...]
    window: int
    labels: int = 1000
    library: str = "transformers"  # one of LIBRARIES

    def config(self):
        from transformers import SwinConfig

        return SwinConfig(image_size=self.image, embed_dim=self.embed_dim, depths=list(self.depths),
                          num_heads=list(self.heads), window_size=self.window, num_labels=self.labels,
                          drop_path_rate=0.0)

    def build(self) -> torch.nn.Module:
        """The classifier, randomly initialised by its library."""
        if self.library == "transformers":
            from transformers import SwinForImageClassification

            return SwinForImageClassification(self.config())
        if self.library == "timm":
            import timm

            # swin_tiny_patch4_window7_224's own dimensions for Swin-T; smaller ones for the quick mode
            return timm.create_model("swin_tiny_patch4_window7_224", pretrained=False, img_size=self.image,
                                     embed_dim=self.embed_dim, depths=self.depths, num_heads=self.heads,
                                     window_size=self.window, num_classes=self.labels, drop_path_rate=0.0)
        from torchvision.models import swin_transformer as tv

        if self == TORCHVISION_SWIN_T:
            model = tv.swin_t(weights=None, num_classes=self.labels)
        else:
            model = tv.SwinTransformer(patch_size=[4, 4], embed_dim=self.embed_dim, depths=list(self.depths),
                                       num_heads=list(self.heads), window_size=[self.window] * 2,
                                       num_classes=self.labels)
        for module in model.modules():  # swin_t's stochastic depth (0.2) would draw differently per contender
            if type(module).__name__ == "StochasticDepth":
                module.p = 0.0
        return model


def logits(model, pixels: torch.Tensor) -> torch.Tensor:
    """A classifier's logits: HF models return them in an output object, timm and torchvision as a tensor."""
    output = model(pixels)
    return output.logits if hasattr(output, "logits") else output


def _swin_t(name: str, library: str) -> ModelSpec:
    return ModelSpec(name, 224, 96, (2, 2, 6, 2), (3, 6, 12, 24), 7, library=library)


def _tiny(name: str, library: str) -> ModelSpec:
    # one stage (an unshifted and a shifted block) on a 16x16 map: dynamo traces the unpatched models slowly
    return ModelSpec(name, 64, 16, (2,), (2,), 4, labels=10, library=library)


SWIN_T = _swin_t("Swin-T", "transformers")
TIMM_SWIN_T = _swin_t("timm swin_tiny_patch4_window7_224", "timm")
TORCHVISION_SWIN_T = _swin_t("torchvision swin_t", "torchvision")
TINY = _tiny("tiny Swin (quick mode)", "transformers")
TINY_TIMM = _tiny("tiny timm Swin (quick mode)", "timm")
TINY_TORCHVISION = _tiny("tiny torchvision Swin (quick mode)", "torchvision")
FULL_SPECS = {spec.library: spec for spec in (SWIN_T, TIMM_SWIN_T, TORCHVISION_SWIN_T)}
TINY_SPECS = {spec.library: spec for spec in (TINY, TINY_TIMM, TINY_TORCHVISION)}


def spec_for(library: str, tiny: bool) -> ModelSpec:
    return (TINY_SPECS if tiny else FULL_SPECS)[library]


@dataclass
class Setting:
    """Where and how a run measures: device, autocast dtype, batch per pass and timed rounds."""

    device: torch.device
    autocast: torch.dtype | None
    batch: dict[str, int]
    rounds: dict[str, int]
    compile_backend: str = "inductor"

    @classmethod
    def for_run(cls, full: bool, tiny: bool = False, autocast: torch.dtype | None = None) -> "Setting":
        """``autocast``: the CPU's precision (None: fp32; torch.bfloat16: bf16 autocast); a GPU always runs bf16
        autocast."""
        if tiny:
            device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
            return cls(device, torch.bfloat16 if device.type == "cuda" else autocast, dict.fromkeys(PASSES, 2),
                       dict.fromkeys(PASSES, 1), compile_backend="aot_eager")
        if torch.cuda.is_available():
            batch = {"inference": 128, "training step": 64}
            return cls(torch.device("cuda"), torch.bfloat16, batch, dict.fromkeys(PASSES, 20 if full else 10))
        # CPU: about 1 s per inference round and 5-7 s per training round at batch 8 on 2 cores
        batch = {"inference": 32 if full else 8, "training step": 16 if full else 8}
        return cls(torch.device("cpu"), autocast, batch, {"inference": 7 if full else 3, "training step": 5})

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
    mode: str = "eager"
    median_s: dict[str, float] = field(default_factory=dict)
    peak: dict[str, int] = field(default_factory=dict)
    difference: float = 0.0  # patched vs unpatched, relative to the largest unpatched value
    rounds: int = 0

    def images_per_s(self, contender: str) -> float:
        return self.batch / self.median_s[contender]


def build_models(spec: ModelSpec, device: torch.device, seed: int = 0) -> dict[str, torch.nn.Module]:
    """The unpatched classifier and a patched copy with the same weights (bias tables drawn like the official init)."""
    torch.manual_seed(seed)
    model = spec.build()
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


def pass_callable(model, pass_name: str, setting: Setting, mode: str = "eager"):
    """A call that runs one pass and returns its logits (the training step's from before its update)."""
    model.train(pass_name != "inference")  # before compiling: the mode is part of what dynamo guards on
    forward = torch.compile(model, backend=setting.compile_backend) if mode == "compiled" else model
    if pass_name == "inference":
        def infer(pixels, labels):
            with torch.no_grad(), setting.autocast_context():
                return logits(forward, pixels)
        return infer

    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def train_step(pixels, labels):
        optimizer.zero_grad(set_to_none=True)
        with setting.autocast_context():
            out = logits(forward, pixels)
            loss = F.cross_entropy(out.float(), labels)
        loss.backward()
        optimizer.step()
        return out.detach()
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
    mode: str = "eager"


def prepare_pass(spec: ModelSpec, pass_name: str, setting: Setting, mode: str = "eager") -> PreparedPass:
    if mode == "compiled":
        torch._dynamo.reset()  # every model of a run shares its class's code objects, and their recompile limit
    models = build_models(spec, setting.device)
    batch = setting.batch[pass_name]
    args = inputs(spec, batch, setting.device)
    calls = {name: pass_callable(model, pass_name, setting, mode) for name, model in models.items()}
    first = {name: call(*args) for name, call in calls.items()}  # the check, and the warm-up of lazy state
    return PreparedPass(pass_name, batch, models, calls, args, _relative_difference(first["patched"],
                                                                                  first["unpatched"]), mode)


def measure_pass(spec: ModelSpec, pass_name: str, setting: Setting, progress=None,
                 mode: str = "eager") -> PassResult:
    """Check, then measure both contenders side by side on one pass."""
    prepared = prepare_pass(spec, pass_name, setting, mode)
    rounds = setting.rounds[pass_name]
    result = PassResult(pass_name, prepared.batch, mode, rounds=rounds, difference=prepared.difference)
    for name, call in prepared.calls.items():
        result.peak[name] = peak_bytes(call, prepared.args, setting.device)

    def report_round(r: int) -> None:
        if progress is not None:
            progress(f"  {spec.name} {mode} {pass_name} B{prepared.batch}: round {r}/{rounds}")

    samples = interleaved_times([(prepared.calls[name], lambda: prepared.args) for name in CONTENDERS], rounds,
                                setting.device, on_round=report_round)
    result.median_s = {name: statistics.median(times) for name, times in zip(CONTENDERS, samples)}
    return result


def run(full: bool = False, tiny: bool = False, progress=None, libraries=LIBRARIES,
        modes=MODES, autocast: torch.dtype | None = None, passes=PASSES, out_of_time=None,
        not_run: list[str] | None = None) -> list[tuple[ModelSpec, Setting, list[PassResult]]]:
    """Every pass of every mode for each library's model: [(spec, setting, results)].

    ``out_of_time()``, asked before each measurement: once true, the rest are left out (named in ``not_run``)."""
    setting = Setting.for_run(full, tiny, autocast)
    measured = []
    for library in libraries:
        spec = spec_for(library, tiny)
        results = []
        for mode in modes:
            for pass_name in passes:
                if out_of_time is not None and out_of_time():
                    if not_run is not None:
                        not_run.append(f"{spec.name} {mode} {pass_name} ({setting.precision})")
                    continue
                if progress is not None:
                    progress(f"end-to-end {spec.name} {mode} {pass_name}, batch {setting.batch[pass_name]}, "
                             f"{setting.precision}")
                results.append(measure_pass(spec, pass_name, setting, progress, mode))
        if results:
            measured.append((spec, setting, results))
    return measured


def auto_backend(setting: Setting, spec: ModelSpec) -> str:
    """The backend 'auto' picks for this model's attention calls (its first stage), with the kernel build on the CPU."""
    head_dim = spec.embed_dim // spec.heads[0]
    request = backends.Request("attention", setting.device, setting.autocast or torch.float32,
                               (spec.window, spec.window), head_dim)
    name = backends.choose("auto", request, warn=False)[0]
    if name == "cpp":
        from swin_kernels.ops import cpp

        name += f" ({cpp.kernel_isa(request.dtype)} build)"
    return name


def _rows(spec: ModelSpec, precision: str, results: list[PassResult]) -> list[list[str]]:
    rows = []
    for r in results:
        speedup = r.median_s["unpatched"] / r.median_s["patched"]
        memory = r.peak["patched"] / r.peak["unpatched"] if r.peak["unpatched"] else float("nan")
        rows.append([spec.name, precision, r.mode, r.pass_name, str(r.batch), str(r.rounds),
                     f"{r.images_per_s('unpatched'):.2f}", f"{r.images_per_s('patched'):.2f}", f"{speedup:.2f}x",
                     format_bytes(r.peak["unpatched"]), format_bytes(r.peak["patched"]),
                     f"{memory:.2f}", f"{r.difference:.1e}"])
    return rows


def report_section(full: bool, progress=None, libraries=LIBRARIES, out_of_time=None) -> str:
    """Markdown for results/REPORT.md: each library's Swin-T patched vs unpatched, inference and training step.

    On the CPU without ``full``: one fp32 eager inference row per library (a training step, bf16 autocast rows,
    which PyTorch emulates on CPUs without AVX-512 bf16, and compiled rows come with ``full``: inductor's CPU code
    generation for a whole Swin-T takes minutes per model and pass). On a GPU every mode and pass always runs.
    ``out_of_time()``: asked before each measurement; what is left out once it is true is named in the section."""
    began = time.monotonic()
    gpu = torch.cuda.is_available()
    modes = MODES if full or gpu else ("eager",)
    passes = PASSES if full or gpu else ("inference",)
    not_run: list[str] = []
    measured = run(full=full, progress=progress, libraries=libraries, modes=modes, passes=passes,
                   out_of_time=out_of_time, not_run=not_run)
    if full and not gpu:  # the CPU also runs bf16 autocast (eager), the way people infer on CPUs
        measured += run(full=full, progress=progress, libraries=libraries, modes=("eager",),
                        autocast=torch.bfloat16, out_of_time=out_of_time, not_run=not_run)
    if not measured:
        return ("## End-to-end: Swin-T image classification, patched vs unpatched\n\n**Out of time:** the "
                "demo's time budget was spent before this section; not run: " + "; ".join(not_run) + ".")
    setting = measured[0][1]
    rows = [row for spec, s, results in measured for row in _rows(spec, s.precision, results)]
    backends_used = sorted({f"{s.precision}: {auto_backend(s, SWIN_T)}" for _, s, _ in measured})
    header = ["model", "precision", "mode", "pass", "batch", "rounds", "unpatched images/s", "patched images/s",
              "speed-up", "unpatched peak", "patched peak", "memory ratio", "max difference"]
    threads = torch.get_num_threads()
    device = torch.cuda.get_device_name() if setting.device.type == "cuda" else f"CPU, {threads} torch thread(s)"
    compiled = ("\"compiled\": `torch.compile(model)` (inductor) of each contender; its first, checked call "
                "compiles." if "compiled" in modes else
                "Compiled rows (`torch.compile`, inductor) come with `--full`: compiling a whole Swin-T on the CPU "
                "takes minutes per model and pass.")
    return "\n\n".join([
        f"## End-to-end: Swin-T image classification ({SWIN_T.image}x{SWIN_T.image}), patched vs unpatched",
        "Hugging Face `SwinForImageClassification`, timm `swin_tiny_patch4_window7_224` and torchvision "
        "`swin_t()` (random weights, stochastic depth off), each unpatched against `swin_kernels.patch(model)` "
        f"(backend `auto`, here {'; '.join(backends_used)}) on {device}. Inference: "
        "eval, no grad. Training step: forward, cross-entropy, backward, AdamW step. " + compiled + " Medians of "
        "interleaved rounds (count in the table) after a checked call and a memory-counting warm-up; peak memory "
        "is what one call allocates above what was live before it. \"max difference\": patched "
        "against unpatched logits of the first call (before any optimizer step), relative to the largest "
        "unpatched logit.",
        table(header, rows),
        *([f"**Out of time:** the section used up its time budget; not run: {'; '.join(not_run)}."]
          if not_run else []),
        ("" if full or gpu else "Training steps, bf16 autocast rows and compiled rows on the CPU come with "
         "`--full`. ") + f"_Measured in {time.monotonic() - began:.0f} s._",
    ])
