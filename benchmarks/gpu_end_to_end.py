"""End to end on a GPU: HF SwinForImageClassification (Swin-T, 224²) patched against unpatched, eager or compiled.

The models, inputs and passes are benchmarks/end_to_end.py's (same weights for both, bf16 autocast, inference
under no_grad, a training step with cross-entropy, backward and AdamW); here both run at batch 128, optionally
through ``torch.compile``, and the result is rows for the GPU report. The first call of each model is the check
(patched against unpatched logits) and pays any compile time, which the rows record.
"""

from __future__ import annotations

import statistics
import time

import torch

from .end_to_end import CONTENDERS, SWIN_T, TINY, ModelSpec, Setting, build_models, inputs, pass_callable
from .harness import RELATIVE_TOLERANCE
from .memory import peak_bytes
from .timing import interleaved_times, rounds_for

GPU_BATCH = 128


def setting_for(device: torch.device, dry_run: bool) -> tuple[ModelSpec, Setting]:
    if dry_run:
        return TINY, Setting(device, None, {"inference": 2, "training step": 2}, {"inference": 1, "training step": 1})
    batch = {"inference": GPU_BATCH, "training step": GPU_BATCH}
    return SWIN_T, Setting(device, torch.bfloat16, batch, {"inference": 20, "training step": 10})


def _difference(actual: torch.Tensor, expected: torch.Tensor) -> float:
    scale = expected.double().abs().max().item() or 1.0
    return (actual.double() - expected.double()).abs().max().item() / scale


def measure(spec: ModelSpec, setting: Setting, pass_name: str, mode: str, budget_s: float, warm_only: bool = False,
            progress=None) -> list[dict]:
    """Rows (one per contender) for one pass in one mode ("eager" or "compiled")."""
    device = setting.device
    models = build_models(spec, device)
    if mode == "compiled":
        models = {name: torch.compile(model) for name, model in models.items()}
    args = inputs(spec, setting.batch[pass_name], device)
    calls = {name: pass_callable(model, pass_name, setting) for name, model in models.items()}
    first, prepare_s = {}, {}
    for name in CONTENDERS:
        began = time.perf_counter()
        first[name] = calls[name](*args)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        prepare_s[name] = time.perf_counter() - began
        if progress:
            progress(f"  end-to-end {mode} {pass_name} {name}: first call {prepare_s[name]:.1f} s")
    base = dict(kind="end_to_end", model=spec.name, mode=mode, pass_name=pass_name, batch=setting.batch[pass_name],
                precision=setting.precision)
    if warm_only:
        return [dict(base, contender=name, status="warmed", prepare_s=prepare_s[name]) for name in CONTENDERS]
    difference = _difference(first["patched"], first["unpatched"])
    tolerance = RELATIVE_TOLERANCE[setting.autocast or torch.float32]
    # the CPU's profiler-based count is slow and not what a GPU run uses: a dry run skips it
    peaks = {name: peak_bytes(calls[name], args, device) if device.type == "cuda" else None for name in CONTENDERS}
    began = time.perf_counter()
    calls["unpatched"](*args)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    estimate = time.perf_counter() - began
    most = setting.rounds[pass_name]
    rounds = rounds_for(2 * estimate, min_rounds=min(3, most), max_rounds=most, budget_s=budget_s)
    samples = interleaved_times([(calls[name], lambda: args) for name in CONTENDERS], rounds, device)
    medians = {name: statistics.median(times) for name, times in zip(CONTENDERS, samples)}
    rows = []
    for name in CONTENDERS:
        row = dict(base, contender=name, status="ok", median_ms=medians[name] * 1e3, rounds=rounds,
                   images_per_s=setting.batch[pass_name] / medians[name], peak_bytes=peaks[name],
                   prepare_s=prepare_s[name], speedup_vs_unpatched=medians["unpatched"] / medians[name])
        if name == "patched":
            row["difference"] = difference
            if not difference <= tolerance:
                row.update(status="wrong", reason=f"patched logits differ from unpatched by {difference:.2e} "
                                                  f"(relative), tolerance {tolerance:.0e}")
        rows.append(row)
    return rows
