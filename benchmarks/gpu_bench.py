"""The GPU benchmarks of `make gpu-check`: Swin-T attention at batch 128 and the whole model, within a time budget.

    python -m benchmarks.gpu_bench --out DIR --budget SECONDS [--dry-run] [--warm-only]

Work is done in priority order and each group's rows are appended to DIR/bench_rows.jsonl the moment they are
measured, so a run cut short keeps everything before the cut:
  1. the attention core of Swin-T stage 1 (56x56, C96, 3 heads), shifted, bf16: forward, then forward+backward
     (the targets: >= 4x eager and >= 1.5x flex_attention forward, >= 3x eager forward+backward, forward at >= 70%
     of the HBM byte floor);
  2. the whole Swin-T classifier, eager: inference and training step, patched against unpatched;
  3. the attention branch (qkv Linear + attention + proj) of the same block;
  4. then wider: the unshifted block, stages 2-4, fp16 and fp32, the compiled whole model.
Contenders at each level are timed side by side in interleaved rounds (benchmarks/gpu_timing.py), after one call
each that checks the result against the reference (and pays any compile time) and one that counts peak memory.
Compiled contenders (flex_attention, torch.compile of the reference) are skipped once their compile time passes
a cap, or when their usual compile time no longer fits in what is left. ``--warm-only`` only makes the compiled
contenders compile (filling inductor's caches for a later run); ``--dry-run`` runs tiny shapes on the CPU with
the contenders that run there, to check this code without a GPU.
"""

from __future__ import annotations

import argparse
import gc
import importlib.metadata
import json
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from . import gpu_end_to_end, gpu_metrics, gpu_report
from .contenders import CONTENDERS, PreparedCache, Unsupported
from .gpu_timing import L2Flush, interleaved_gpu_times, rounds_within
from .harness import WrongResult, prepare_pass
from .memory import peak_bytes
from .shapes import BenchShape, stage_shape

EAGER = {"core": "reference", "branch": "official"}  # the baseline each level's speed-ups are against
LEVEL_CONTENDERS = {
    "core": ("reference", "triton", "cuda", "flex", "sdpa", "compiled"),
    "branch": ("official", "hf-sdpa", "sdpa", "triton", "cuda", "flex", "compiled"),
}
COMPILED = ("flex", "compiled")
# this library's own contenders: only their wrong results fail the run; a peer's (flex, sdpa, torch.compile...) is
# reported as that peer's
OURS = ("triton", "cuda", "cpp", "patched")
COMPILE_PRIOR_S = 40.0  # assumed compile time of a compiled contender before one has been seen
PASS_NAMES = ("forward", "forward+backward")


@dataclass(frozen=True)
class AttentionGroup:
    level: str
    shape: BenchShape
    dtype: torch.dtype
    pass_name: str
    run: int = 1  # the headline groups run twice (stability)

    @property
    def label(self) -> str:
        again = f" | run {self.run}" if self.run > 1 else ""
        return (f"{self.level} | {self.shape.label} | {str(self.dtype).removeprefix('torch.')} | "
                f"{self.pass_name}{again}")


@dataclass(frozen=True)
class EndToEndGroup:
    mode: str  # "eager" or "compiled"
    pass_name: str  # "inference" or "training step"
    library: str = "transformers"  # whose Swin-T (benchmarks.end_to_end.LIBRARIES)
    run: int = 1  # the headline rows run twice: their two runs show how stable a measurement is

    @property
    def label(self) -> str:
        again = f" (run {self.run})" if self.run > 1 else ""
        return f"end-to-end {self.library} {self.mode} {self.pass_name}{again}"


@dataclass(frozen=True)
class VolumeGroup:
    """3-D rows (benchmarks/end_to_end_video.py): "swin3d" (torchvision swin3d_t), "unetr" (MONAI SwinUNETR 3-D at
    64³) or "core" (the attention core at windows 8x7x7 and 7x7x7, triton against the reference)."""

    kind: str
    pass_name: str

    @property
    def label(self) -> str:
        return f"3-D {self.kind} {self.pass_name}"


def swin_t_shapes(batch: int) -> dict[str, BenchShape]:
    """Swin-T's attention calls at 224² (stage 4 is one unshifted window): 's1s3' = stage 1, shift 3."""
    shapes = {}
    for stage in (1, 2, 3, 4):
        for shifted in (False, True):
            shape = stage_shape("Swin-T/S", stage, (224, 224), batch, 7, shifted)
            shapes.setdefault(f"s{stage}s{shape.shift}", shape)
    return shapes


def dry_run_shapes() -> dict[str, BenchShape]:
    """Two tiny calls (one padded and shifted) that every CPU contender runs in well under a second."""
    return {"s1s3": BenchShape("Swin-T/S", 1, "dry", 1, 9, 10, 32, 2, 7, 3),
            "s1s0": BenchShape("Swin-T/S", 1, "dry", 1, 9, 10, 32, 2, 7, 0)}


def plan(dry_run: bool, warm_only: bool = False) -> list:
    """Every group in priority order."""
    bf16, fp16, fp32 = torch.bfloat16, torch.float16, torch.float32
    if dry_run:  # each kind of group once: both levels and passes, both modes end to end
        shapes = dry_run_shapes()
        groups = [AttentionGroup(level, shapes["s1s3"], fp32, p) for level in ("core", "branch") for p in PASS_NAMES]
        groups.append(AttentionGroup("core", shapes["s1s0"], fp32, "forward"))
        return (groups + [EndToEndGroup(mode, p) for mode in ("eager", "compiled")
                          for p in ("inference", "training step")]
                + [VolumeGroup(kind, "inference") for kind in ("core", "swin3d", "unetr")])
    shapes = swin_t_shapes(128)
    first = shapes["s1s3"]
    groups: list = [AttentionGroup("core", first, bf16, p) for p in PASS_NAMES]
    if warm_only:  # what the compile caches help most: the first groups' compiled contenders and models
        return (groups + [AttentionGroup("branch", first, bf16, p) for p in PASS_NAMES]
                + [EndToEndGroup("compiled", p) for p in ("inference", "training step")])
    groups += [EndToEndGroup("eager", p) for p in ("inference", "training step")]
    # the headline rows again (stability: two runs within 10 %), then the other libraries' Swin-T
    groups += [AttentionGroup("core", first, bf16, p, run=2) for p in PASS_NAMES]
    groups += [EndToEndGroup("eager", p, run=2) for p in ("inference", "training step")]
    groups += [EndToEndGroup("eager", p, library) for library in ("timm", "torchvision")
               for p in ("inference", "training step")]
    groups += [VolumeGroup(kind, p) for kind in ("core", "swin3d", "unetr") for p in ("inference", "training step")]
    groups += [AttentionGroup("branch", first, bf16, p) for p in PASS_NAMES]
    others = [s for key, s in shapes.items() if key != "s1s3"]
    groups += [AttentionGroup("core", s, bf16, p) for s in others for p in PASS_NAMES]
    groups += [EndToEndGroup("compiled", p) for p in ("inference", "training step")]
    for dtype in (fp16, fp32):
        groups += [AttentionGroup("core", s, dtype, p) for s in shapes.values() for p in PASS_NAMES]
    for dtype in (bf16, fp16, fp32):
        groups += [AttentionGroup("branch", s, dtype, p) for s in shapes.values() for p in PASS_NAMES
                   if (s, dtype) != (first, bf16)]
    return groups


class RowWriter:
    """JSON lines, each flushed and synced as it is written."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.file = open(path, "w")

    def write(self, row: dict) -> None:
        self.file.write(json.dumps(row, default=str) + "\n")
        self.file.flush()
        os.fsync(self.file.fileno())


@dataclass
class CompileCaps:
    """Per compiled contender: seconds its checked calls (compiles) took, and the cap on them."""

    cap_s: float
    spent: dict[str, float] = field(default_factory=dict)
    last: dict[str, float] = field(default_factory=dict)

    def refusal(self, key: str, remaining_s: float, share: float = 1.0) -> str | None:
        """Why ``key`` should not compile now (None: go ahead); it may use ``share`` of the remaining time."""
        if key not in COMPILED:
            return None
        if self.spent.get(key, 0.0) >= self.cap_s:
            return f"its compile-time cap ({self.cap_s:.0f} s) is spent ({self.spent[key]:.0f} s so far)"
        expected = self.last.get(key, COMPILE_PRIOR_S)
        if expected > share * remaining_s:
            where = "the" if share == 1.0 else f"{share:.0%} of the"
            return f"its compile (about {expected:.0f} s) does not fit in {where} {remaining_s:.0f} s left"
        return None

    def record(self, key: str, seconds: float) -> None:
        if key in COMPILED:
            self.spent[key] = self.spent.get(key, 0.0) + seconds
            self.last[key] = seconds


class Bench:
    def __init__(self, args):
        self.args = args
        self.device = torch.device("cpu" if args.dry_run else "cuda")
        self.deadline = time.monotonic() + args.budget
        self.rows = RowWriter(Path(args.out) / "bench_rows.jsonl")
        self.cache = PreparedCache(self.device)
        self.caps = CompileCaps(args.compile_cap)
        self.flush = L2Flush(self.device)
        self.hbm, self.hbm_source = gpu_metrics.hbm_peak(self.device)
        self.began = time.monotonic()

    @property
    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def say(self, text: str) -> None:
        minutes, seconds = divmod(int(time.monotonic() - self.began), 60)
        print(f"[{minutes:2d}:{seconds:02d}] {text}", flush=True)

    def meta(self) -> dict:
        from swin_kernels import backends

        copy = None if self.args.warm_only else gpu_metrics.copy_bandwidth(self.device)
        dtype = torch.bfloat16 if self.device.type == "cuda" else torch.float32
        auto = backends.choose("auto", backends.Request("attention", self.device, dtype, (7, 7), 32), warn=False)[0]
        return dict(kind="meta", dry_run=self.args.dry_run, warm_only=self.args.warm_only, budget_s=self.args.budget,
                    device=torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else "cpu",
                    torch=torch.__version__, cuda=torch.version.cuda, triton=_version("triton"),
                    hbm_peak_bytes_per_s=self.hbm, hbm_source=self.hbm_source, copy_bytes_per_s=copy,
                    auto_backend=auto, compile_cap_s=self.args.compile_cap)

    # --------------------------------------------------------------------------------------- attention
    def attention(self, group: AttentionGroup, targeted: bool) -> list[dict]:
        """Rows of one group; ``targeted``: a group the targets are stated for, where compiles may take all the
        time left (elsewhere a quarter, so the rest of the plan keeps its share)."""
        g = group
        keys = list(LEVEL_CONTENDERS[g.level]) + (["cpp"] if self.args.dry_run else [])
        base = dict(kind="attention", level=g.level, label=g.shape.label, shape_id=g.shape.short_id,
                    stage=g.shape.stage, shift=g.shape.shift, batch=g.shape.batch, run=g.run,
                    dtype=str(g.dtype).removeprefix("torch."), pass_name=g.pass_name, eager=EAGER[g.level])
        rows, runnable = [], []
        for key in keys:
            row = dict(base, contender=key, title=CONTENDERS[key].label)
            rows.append(row)
            refusal = self.refusal(key, targeted)
            if refusal is not None:
                row.update(status="skipped", reason=refusal)
                continue
            began = time.perf_counter()
            try:
                target, setup, error = prepare_pass(self.cache, key, g.level, g.shape, g.dtype, g.pass_name)
                if self.device.type == "cuda":
                    torch.cuda.synchronize(self.device)
            except Unsupported as reason:
                row.update(status="skipped", reason=str(reason))
                continue
            except WrongResult as failure:
                row.update(status="wrong", reason=str(failure))
                continue
            except Exception as failure:  # a crashing contender is reported; the others still run
                row.update(status="failed", reason=f"{type(failure).__name__}: {failure}"[:2000])
                continue
            finally:
                self.caps.record(key, time.perf_counter() - began)
            row.update(prepare_s=round(time.perf_counter() - began, 2), error=error)
            runnable.append((row, target, setup))
        if self.args.warm_only or not runnable:
            for row, _, _ in runnable:
                row.update(status="warmed")
            return rows
        estimate = 0.0
        for row, target, setup in runnable:  # the warm-up call; on the GPU it counts the peak memory
            began = time.perf_counter()
            if self.device.type == "cuda":
                row["peak_bytes"] = peak_bytes(target, setup(), self.device)
            else:  # the CPU's profiler-based count is slow and not what a GPU run uses: a dry run skips it
                target(*setup())
            estimate += time.perf_counter() - began
        budget = 0.4 if self.device.type == "cuda" else 0.2
        rounds = rounds_within(estimate, budget, 3 if self.args.dry_run else 10, 100)
        samples = interleaved_gpu_times([(t, s) for _, t, s in runnable], rounds, self.device, self.flush)
        for (row, _, _), times in zip(runnable, samples):
            row.update(status="ok", median_ms=statistics.median(times) * 1e3, rounds=rounds,
                       **gpu_end_to_end.spread(times))
        self.derive(rows, g)
        return rows

    def refusal(self, key: str, targeted: bool) -> str | None:
        if self.args.dry_run and key in COMPILED:
            return "not in the dry run: compiling it takes minutes on a CPU"
        if self.args.warm_only and key not in COMPILED:
            return "the warm-up only compiles"
        return self.caps.refusal(key, self.remaining - 15, 1.0 if targeted or self.args.warm_only else 0.25)

    def derive(self, rows: list[dict], g: AttentionGroup) -> None:
        """Speed-up over eager, bytes/s against the floor (core), TFLOP/s."""
        eager = next((r for r in rows if r["contender"] == EAGER[g.level] and r.get("status") == "ok"), None)
        flops = (gpu_metrics.core_flops if g.level == "core" else gpu_metrics.branch_flops)(g.shape, g.pass_name)
        floor = gpu_metrics.core_floor_bytes(g.shape, g.dtype, g.pass_name) if g.level == "core" else None
        for row in rows:
            if row.get("status") != "ok":
                continue
            seconds = row["median_ms"] / 1e3
            row["tflops"] = flops / seconds / 1e12
            if eager is not None:
                row["speedup_vs_eager"] = eager["median_ms"] / row["median_ms"]
            if floor is not None:
                row.update(floor_bytes=floor, bytes_per_s=floor / seconds)
                if self.hbm:
                    row["floor_fraction"] = floor / seconds / self.hbm

    # ------------------------------------------------------------------------------------- end to end
    def end_to_end(self, group: EndToEndGroup) -> list[dict]:
        base = dict(kind="end_to_end", mode=group.mode, pass_name=group.pass_name, library=group.library,
                    run=group.run)
        refusal = None
        if group.mode == "compiled" and self.args.dry_run:
            refusal = "not in the dry run: compiling the models takes minutes on a CPU"
        elif group.mode == "compiled" and not self.args.warm_only:
            expected = self.caps.last.get("compiled-model", 2 * COMPILE_PRIOR_S)
            if expected > self.remaining - 15:
                refusal = (f"compiling and timing both models (about {expected:.0f} s) does not fit in the "
                           f"{self.remaining:.0f} s left")
        if refusal is not None:
            return [dict(base, contender=c, status="skipped", reason=refusal) for c in ("unpatched", "patched")]
        spec, setting = gpu_end_to_end.setting_for(self.device, self.args.dry_run, group.library)
        budget = min(10.0, max(1.0, self.remaining / 8))
        began = time.perf_counter()
        try:
            rows = gpu_end_to_end.measure(spec, setting, group.pass_name, group.mode, budget, self.args.warm_only,
                                          progress=self.say, profile=group.run == 1)
            for row in rows:
                row["run"] = group.run
        except Exception as failure:
            reason = f"{type(failure).__name__}: {failure}"[:2000]
            return [dict(base, contender=c, status="failed", reason=reason) for c in ("unpatched", "patched")]
        finally:
            if group.mode == "compiled":
                self.caps.last["compiled-model"] = time.perf_counter() - began
        return rows

    def volume(self, group: VolumeGroup) -> list[dict]:
        from . import end_to_end_video as video

        base = dict(kind="volume", group_label=group.label, pass_name=group.pass_name)
        try:
            rows = video.run(tiny=self.args.dry_run, rounds=2 if self.args.dry_run else 5, kinds=(group.kind,),
                             passes=(group.pass_name,), unetr_sizes=(64,), device=self.device, progress=self.say)
        except Exception as failure:
            return [dict(base, status="failed", contender="patched", reason=f"{type(failure).__name__}: {failure}"[:2000])]
        out = []
        for row in rows:
            out.append(dict(base, status="ok", contender=row.contenders[1], what=row.what,
                            contenders=list(row.contenders), difference=row.difference,
                            median_ms={k: v * 1e3 for k, v in row.median_s.items()}, peak_bytes=row.peak,
                            speedup=row.speedup, memory_ratio=row.memory_ratio))
        return out

    # ---------------------------------------------------------------------------------------------- run
    def run(self) -> int:
        self.rows.write(self.meta())
        groups = plan(self.args.dry_run, self.args.warm_only)
        done, problems, stopped, inputs = 0, 0, None, None
        try:
            for i, group in enumerate(groups, 1):
                if self.remaining < 10:
                    stopped = f"stopped by the budget after {done} of {len(groups)} groups"
                    break
                self.say(f"[{i}/{len(groups)}] {group.label} ({self.remaining:.0f} s left)")
                if isinstance(group, AttentionGroup) and (group.shape, group.dtype) != inputs:
                    inputs = (group.shape, group.dtype)
                    self.release()  # one shape's inputs and built contenders alive at a time
                if isinstance(group, AttentionGroup):
                    rows = self.attention(group, targeted=group.level == "core" and group.shape == groups[0].shape
                                          and group.dtype == groups[0].dtype)
                elif isinstance(group, VolumeGroup):
                    self.release()
                    rows = self.volume(group)
                else:
                    rows = self.end_to_end(group)
                for row in rows:
                    row["group"] = i
                    if row.get("status") in ("wrong", "failed") and row.get("contender") not in OURS:
                        row["peer"] = True
                    self.rows.write(row)
                    problems += row.get("status") in ("wrong", "failed") and not row.get("peer")
                    self.say("    " + _row_line(row))
                done += 1
        except KeyboardInterrupt:
            stopped = f"interrupted (time limit) during group {done + 1} of {len(groups)}; {done} complete"
        text = stopped or f"all {len(groups)} groups done"
        self.rows.write(dict(kind="end", text=text, stopped_early=stopped is not None, groups_done=done,
                             groups=len(groups), seconds=round(time.monotonic() - self.began, 1)))
        self.say(text)
        if self.args.markdown:
            gpu_report.write(self.rows.path, Path(self.args.markdown), Path(self.args.plot) if self.args.plot else None)
        return 1 if problems else 0

    def release(self) -> None:
        """Drop the inputs and built contenders (compiled code stays cached in its module) to bound memory."""
        self.cache = PreparedCache(self.device)
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _row_line(row: dict) -> str:
    name = f"{row.get('contender')}".ljust(10)
    if row.get("status") != "ok":
        return f"{name} {row.get('status')}: {row.get('reason', '')[:160]}"
    if row.get("kind") == "volume":
        base, fused = row["contenders"]
        return (f"{name} {row['what']}: {row['median_ms'][fused]:.3f} ms, {row['speedup']:.2f}x {base}, "
                f"peak memory {row['memory_ratio']:.2f} of {base}'s")
    parts = [f"{row['median_ms']:.3f} ms"]
    for key, fmt in (("speedup_vs_eager", "{:.2f}x eager"), ("speedup_vs_unpatched", "{:.2f}x unpatched"),
                     ("floor_fraction", "{:.0%} of HBM peak"), ("tflops", "{:.1f} TFLOP/s"),
                     ("images_per_s", "{:.0f} images/s")):
        if row.get(key) is not None:
            parts.append(fmt.format(row[key]))
    return f"{name} " + ", ".join(parts)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder for bench_rows.jsonl")
    parser.add_argument("--budget", type=float, default=150.0, help="seconds for the whole run")
    parser.add_argument("--compile-cap", type=float, default=90.0,
                        help="seconds of compiling a compiled contender may take in all before it is dropped")
    parser.add_argument("--dry-run", action="store_true", help="tiny shapes on the CPU: checks the code path only")
    parser.add_argument("--warm-only", action="store_true", help="only compile the compiled contenders")
    parser.add_argument("--markdown", help="write the report (benchmarks/gpu_report.py) here at the end")
    parser.add_argument("--plot", help="and its plot here")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if not args.dry_run and not torch.cuda.is_available():
        print("no CUDA device: run with --dry-run to check the code path on the CPU", file=sys.stderr)
        return 2
    return Bench(args).run()


if __name__ == "__main__":
    sys.exit(main())
