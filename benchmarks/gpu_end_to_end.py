"""End to end on a GPU: Swin-T classifiers (HF transformers, timm, torchvision; 224²) patched against unpatched,
eager or compiled.

The models, inputs and passes are benchmarks/end_to_end.py's (same weights for both, bf16 autocast, inference
under no_grad, a training step with cross-entropy, backward and AdamW); here both run at batch 128, optionally
through ``torch.compile``, and the result is rows for the GPU report. The first call of each model is the check
(patched against unpatched logits) and pays any compile time, which the rows record. Rows carry the spread of
the timed rounds (min, quartiles, max), and eager rows a one-step torch.profiler summary (profile_step): GPU and
host time per Swin block, the GPU's idle time in the step, and any device-to-host synchronisation.
"""

from __future__ import annotations

import statistics
import time

import torch

from .end_to_end import CONTENDERS, ModelSpec, Setting, build_models, inputs, pass_callable, spec_for
from .harness import RELATIVE_TOLERANCE
from .memory import peak_bytes
from .timing import interleaved_times, rounds_for

GPU_BATCH = 128


BLOCK_CLASSES = ("SwinLayer", "SwinTransformerBlock", "SwinTransformerBlockV2")  # HF, timm, torchvision blocks
SYNC_CALLS = ("cudaDeviceSynchronize", "cudaStreamSynchronize", "cudaEventSynchronize", "cudaMemcpy")


def setting_for(device: torch.device, dry_run: bool, library: str = "transformers") -> tuple[ModelSpec, Setting]:
    if dry_run:
        return spec_for(library, True), Setting(device, None, {"inference": 2, "training step": 2}, {"inference": 1, "training step": 1})
    batch = {"inference": GPU_BATCH, "training step": GPU_BATCH}
    return spec_for(library, False), Setting(device, torch.bfloat16, batch, {"inference": 20, "training step": 10})


def _difference(actual: torch.Tensor, expected: torch.Tensor) -> float:
    scale = expected.double().abs().max().item() or 1.0
    return (actual.double() - expected.double()).abs().max().item() / scale


def spread(times: list[float]) -> dict:
    """min, quartiles and max of a row's rounds, in ms."""
    q1, _, q3 = statistics.quantiles(times, n=4) if len(times) > 1 else (times[0],) * 3
    return dict(min_ms=min(times) * 1e3, q1_ms=q1 * 1e3, q3_ms=q3 * 1e3, max_ms=max(times) * 1e3)


def profile_step(call, args, model, device: torch.device) -> dict:
    """One call under torch.profiler: per Swin block the host time (its forward, entry to return) and the GPU time
    of the kernels it launched; the step's GPU busy and idle time; host-synchronising CUDA calls made inside it."""
    from torch.profiler import ProfilerActivity, profile, record_function

    blocks = [m for m in model.modules() if type(m).__name__ in BLOCK_CLASSES]
    ranges, handles = {}, []

    def enter(module, _args):
        ranges[id(module)] = record_function("swin_block")
        ranges[id(module)].__enter__()

    def leave(module, _args, _out):
        ranges.pop(id(module)).__exit__(None, None, None)

    for block in blocks:
        handles += [block.register_forward_pre_hook(enter), block.register_forward_hook(leave)]
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    try:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        began = time.perf_counter()
        with profile(activities=activities) as prof:
            call(*args)
            host_s = time.perf_counter() - began
            if device.type == "cuda":
                torch.cuda.synchronize(device)
        wall_s = time.perf_counter() - began
    finally:
        for handle in handles:
            handle.remove()
    averages = prof.key_averages()
    block = next((e for e in averages if e.key == "swin_block"), None)
    kernels_us = sum(e.self_device_time_total for e in averages if e.device_type == torch.autograd.DeviceType.CUDA)
    syncs = {e.key: e.count for e in averages if e.key in SYNC_CALLS}
    if device.type == "cuda":  # the profile's own closing synchronize
        syncs["cudaDeviceSynchronize"] = syncs.get("cudaDeviceSynchronize", 0) - 1
    calls = block.count if block else 0
    return dict(blocks=calls, block_host_ms=block.cpu_time_total / 1e3 / calls if calls else None,
                block_gpu_ms=block.device_time_total / 1e3 / calls if calls else None,
                step_host_ms=host_s * 1e3, step_wall_ms=wall_s * 1e3, gpu_busy_ms=kernels_us / 1e3,
                gpu_idle_ms=max(0.0, wall_s * 1e3 - kernels_us / 1e3),
                syncs={k: v for k, v in syncs.items() if v > 0})


def measure(spec: ModelSpec, setting: Setting, pass_name: str, mode: str, budget_s: float, warm_only: bool = False,
            progress=None, profile: bool = False) -> list[dict]:
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
    base = dict(kind="end_to_end", model=spec.name, library=spec.library, mode=mode, pass_name=pass_name, batch=setting.batch[pass_name],
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
    for name, times in zip(CONTENDERS, samples):
        row = dict(base, contender=name, status="ok", median_ms=medians[name] * 1e3, rounds=rounds, **spread(times),
                   images_per_s=setting.batch[pass_name] / medians[name], peak_bytes=peaks[name],
                   prepare_s=prepare_s[name], speedup_vs_unpatched=medians["unpatched"] / medians[name])
        if name == "patched":
            row["difference"] = difference
            if not difference <= tolerance:
                row.update(status="wrong", reason=f"patched logits differ from unpatched by {difference:.2e} "
                                                  f"(relative), tolerance {tolerance:.0e}")
        if profile and mode == "eager":
            try:
                row["profile"] = profile_step(calls[name], args, models[name], device)
            except Exception as failure:  # the profile is extra information: its failure is reported, not fatal
                row["profile"] = {"error": f"{type(failure).__name__}: {failure}"[:500]}
        rows.append(row)
    return rows
