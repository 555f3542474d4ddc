"""Ahead-of-time compile report of every Triton kernel for sm_80 and sm_90 (no GPU needed).

    python -m tools.compile_report [--jobs N] [--plans quick|ci|full] [--paths bf16,...] [--json F]

Compiles each kernel with triton.compile(ASTSource(...), target=GPUTarget("cuda", arch, 32)) in the one launch
configuration the backend uses for each plan on that target (the tile table's sm_80 / sm_90 family; and the
default family's, which any other GPU runs, on both, labelled "default" where it differs), then runs the ptxas
that ships with Triton (-v) on the PTX for registers and spills. ``--plans full`` covers every plan the backend accepts: each dtype path (fp16, bf16, fp32
with exact products, fp32 with TF32, fp32 with 3xTF32, fp64), head_dim 32, 64 and 128 (the largest accepted, 64 for fp64; and 16,
the smallest tile, at 7x7) and windows of 49, 144, 256 and 576 tokens (7x7, 12x12, 16x16 and the largest accepted,
24x24: one, three, four and nine key blocks of 64, or two, five, eight and eighteen of 32 on the exact path), and
the 3-D windows of video and volume models (8x7x7 of torchvision's swin3d at head_dim 32, 7x7x7 of MONAI's
SwinUNETR at head_dim 16 and 32), with and without dropout, every optional input present (the most registers).
``--plans ci`` (the default, what `make test` runs): 7x7 at head_dim 32 in full, each path's largest accepted 2-D
plan with dropout, and the 3-D plans with dropout on the bf16, fp16 and fp32 paths. ``--quick``: 7x7 at head_dim 32.
Prints one row per compile: kernel, target, dtype, shape, config, registers, spill bytes, shared memory,
tensor-core instructions in the PTX (mma.sync; wgmma.mma_async on sm_90). Exits 1 if any kernel fails to compile
or spills.
"""

from __future__ import annotations

import os

os.environ.pop("TRITON_INTERPRET", None)  # real compilation: must be decided before triton is imported

import argparse  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from concurrent.futures import ProcessPoolExecutor, as_completed  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402

TARGETS = (80, 90)
# dtype path -> (element type, fp32 precision: configs.FP32_PRECISIONS, read for fp32 only)
PATHS = {"fp16": ("fp16", "ieee"), "bf16": ("bf16", "ieee"), "fp32": ("fp32", "ieee"), "tf32": ("fp32", "tf32"),
         "tf32x3": ("fp32", "tf32x3"), "fp64": ("fp64", "ieee")}
TORCH_DTYPES = {"fp16": "float16", "bf16": "bfloat16", "fp32": "float32", "fp64": "float64"}
# (window, head_dim): window (rows, columns) of a map or (depth, rows, columns) of a volume
PLANS = ((((7, 7), 16),) + tuple(((m, m), d) for m in (7, 12, 16, 24) for d in (32, 64, 128))
         + (((8, 7, 7), 32), ((7, 7, 7), 16), ((7, 7, 7), 32)))
QUICK_PLANS = (((7, 7), 32),)
# what `make test` compiles: Swin-T/S/B's plan with and without dropout, and with dropout (the most registers) the
# largest accepted plans, 24x24 windows at head_dim 128 (64 for fp64, the largest it accepts), and the 3-D plans of
# torchvision's swin3d (8x7x7, head_dim 32) and MONAI's SwinUNETR (7x7x7, head_dim 16 and 32) on CI_VOLUME_PATHS
CI_PLANS = (((7, 7), 32), ((24, 24), 64), ((24, 24), 128), ((8, 7, 7), 32), ((7, 7, 7), 16), ((7, 7, 7), 32))
CI_VOLUME_PATHS = ("bf16", "fp16", "fp32", "tf32x3")
PLAN_SETS = {"quick": QUICK_PLANS, "ci": CI_PLANS, "full": PLANS}


@dataclass(frozen=True)
class Job:
    kernel: str  # key of KERNELS
    arch: int
    dtype: str  # dtype path (PATHS)
    plan: str  # human-readable shape, e.g. "M7x7 d32"
    constexprs: tuple  # sorted (name, value) pairs
    num_warps: int
    num_stages: int
    maxnreg: int | None = None
    meta: str = ""  # the config's own meta-parameters, for the table
    pointer_types: tuple = field(default=())  # (name, triton type) of pointer / float arguments


def _kernel(name: str):
    from swin_kernels.ops.triton import (attention_backward, attention_forward, partition, row_delta, score_table,
                                         slot_sums)

    return {
        "attention_fwd": attention_forward.window_attention_fwd_kernel,
        "attention_dkdv": attention_backward.window_attention_dkdv_kernel,
        "attention_dq": attention_backward.window_attention_dq_kernel,
        "score_table": score_table.score_table_kernel,
        "sum_slots": slot_sums.sum_slots_kernel,
        "row_delta": row_delta.row_delta_kernel,
        "window_partition": partition.window_partition_kernel,
        "window_reverse": partition.window_reverse_kernel,
    }[name]


_FLOAT_ARGS = ("qk_scale_hi", "qk_scale_lo", "scale_hi", "scale_lo", "keep_hi", "keep_lo", "p_drop", "inv_scale_hi",
               "inv_scale_lo")


def _attention_jobs(plans, dropout_too: bool = True, ci: bool = False) -> list[Job]:
    """Every kernel of every plan and dtype path the backend accepts (unsupported plans are left out: the backend
    declines them; a path's plan that takes another path, 3xTF32 beyond head_dim 64, is that path's), each target
    with its GPU family's tiles and with the default's where they differ. ``ci``: beyond the first plan, only the
    dropout variants of each path's largest 2-D plan and of the 3-D plans on CI_VOLUME_PATHS."""
    import torch

    from swin_kernels.ops.triton import configs

    jobs = []
    for index, (window, head_dim) in enumerate(plans):
        tokens = _tokens(window)
        for path, (element, precision) in PATHS.items():
            torch_dtype = getattr(torch, TORCH_DTYPES[element])
            plan = configs.attention_plan(tokens, head_dim, torch_dtype, precision, volume=is_volume(window))
            if not plan.supported:  # the backend declines it
                continue
            if ci and index > 0:
                wanted = path in CI_VOLUME_PATHS if len(window) == 3 else \
                    _largest_supported(plans, path) == (window, head_dim)
                if not wanted:
                    continue
            variants = (True,) if ci and index > 0 else (False, True) if dropout_too else (False,)
            for dropout in variants:
                for arch in TARGETS:
                    # the tiles the family of this target runs, and the default's (any other GPU) where they differ
                    own = configs.attention_plan(tokens, head_dim, torch_dtype, precision, is_volume(window),
                                                 f"sm_{arch}")
                    for chosen, suffix in ((own, ""), (plan, " default")):
                        if suffix and _same_launches(chosen, own):
                            continue
                        if _takes_path(chosen, path):
                            jobs += _plan_jobs(chosen, arch, path, element, window, head_dim, dropout, suffix)
    return jobs


def _same_launches(a, b) -> bool:
    return (a.input_precision, a.forward_config(), a.backward_config("dkdv"), a.backward_config("dq")) == \
        (b.input_precision, b.forward_config(), b.backward_config("dkdv"), b.backward_config("dq"))


def _plan_jobs(plan, arch: int, path: str, element: str, window, head_dim: int, dropout: bool,
               suffix: str = "") -> list[Job]:
    """The forward, dK/dV and dQ kernels of one plan on one target (``suffix`` names a family's plan run on
    another target, e.g. " default")."""
    acc_type = "fp64" if element == "fp64" else "fp32"
    flags = dict(**window_constexprs(window), HEAD_DIM=head_dim, BLOCK_D=plan.block_d, HAS_PAD=True,
                 HAS_SHIFT=True, DOT_UPCAST=False, INPUT_PRECISION=plan.input_precision, DROPOUT=dropout)
    data = {n: f"*{element}" for n in ("qkv_ptr", "pad_ptr", "out_ptr", "dout_ptr", "dqkv_ptr")}
    acc = {n: f"*{acc_type}" for n in ("table_ptr", "lse_ptr", "delta_ptr", "dbias_part_ptr", "dpad_part_ptr")}
    pointers = tuple(sorted({**data, **acc, "seed_ptr": "*i64", **{n: "fp32" for n in _FLOAT_ARGS}}.items()))
    forward = plan.forward_config()
    label = (f"M{_text(window)} d{head_dim} {plan.num_blocks}x{plan.block}" + (" dropout" if dropout else "")
             + suffix)
    jobs = [_job("attention_fwd", arch, path, label, dict(
        flags, NUM_KEY_BLOCKS=plan.padded // forward.kwargs["BLOCK_N"], FAST_LOG2=acc_type == "fp32",
        **forward.kwargs), forward, pointers)]
    for kernel, flag in (("dkdv", "NEED_DPAD"), ("dq", "NEED_DBIAS")):
        config = plan.backward_config(kernel)
        jobs.append(_job(f"attention_{kernel}", arch, path, label, dict(
            flags, NUM_BLOCKS=plan.padded // config.kwargs["BLOCK"], **config.kwargs, **{flag: True},
            SPLIT_BLOCKS=plan.split_blocks(kernel) > 1,
            **(dict(SLOT_N=plan.dbias_slot_tokens) if kernel == "dq" else {})), config, pointers))
    return jobs


def _tokens(window) -> int:
    n = 1
    for m in window:
        n *= m
    return n


def _text(window) -> str:
    return "x".join(str(m) for m in window)


def is_volume(window) -> bool:
    """Whether the kernels take their 3-D index arithmetic (and the plan its VOLUME_SHAPES): a depth > 1."""
    return len(window) == 3 and window[0] > 1


def window_constexprs(window) -> dict:
    """WINDOW_D / WINDOW_H / WINDOW_W of a 2-D (rows, columns) or 3-D (depth, rows, columns) window."""
    window_d, window_h, window_w = (1, *window) if len(window) == 2 else window
    return dict(WINDOW_D=window_d, WINDOW_H=window_h, WINDOW_W=window_w)


def _largest_supported(plans, path: str):
    """The path's largest accepted 2-D plan."""
    import torch

    from swin_kernels.ops.triton import configs

    element, precision = PATHS[path]
    dtype = getattr(torch, TORCH_DTYPES[element])
    supported = [(w, d) for w, d in plans if len(w) == 2 and _takes_path(configs.attention_plan(
        _tokens(w), d, dtype, precision), path)]
    return max(supported, key=lambda p: (_tokens(p[0]), p[1]))


def _takes_path(plan, path: str) -> bool:
    """The backend accepts the plan, on that dtype path (3xTF32 beyond head_dim 64 takes the exact one)."""
    return plan.supported and plan.path == path


def _small_jobs(plans) -> list[Job]:
    """The score table and the slot sums at the first and the largest window (and the first 3-D one), the row
    delta at the first plan (and the first 3-D one), partition and reverse of a map and of a volume."""
    from swin_kernels.ops.triton import configs, score_table, slot_sums

    jobs = []
    largest = max(plans, key=lambda p: _tokens(p[0]))[0]
    volumes = [p for p in plans if len(p[0]) == 3]
    windows = [plans[0][0], largest] + [w for w, _ in volumes[:1]]
    for window in sorted(set(windows), key=lambda w: (len(w), w)):
        plan = configs.AttentionPlan(_tokens(window), 32)  # the tensor-core plan (the larger tables)
        label = f"M{_text(window)}"
        block_i, block_j = score_table.table_blocks(plan.padded)
        block_c = max(16, configs.next_power_of_2(plan.tokens))
        reduce = configs.LaunchConfig(configs.REDUCE_CONFIG.num_warps, configs.REDUCE_CONFIG.num_stages, None,
                                      (("BLOCK_S", slot_sums.block_slots(block_c)),))
        for arch in TARGETS:
            for acc in ("fp32", "fp64"):
                jobs.append(_job("score_table", arch, acc, label,
                                 dict(**window_constexprs(window), PADDED=plan.padded, BLOCK_I=block_i,
                                      BLOCK_J=block_j, HAS_BIAS=True),
                                 configs.SCORE_TABLE_CONFIG,
                                 (("bias_ptr", f"*{acc}"), ("table_ptr", f"*{acc}"), ("inv_scale_hi", "fp32"),
                                  ("inv_scale_lo", "fp32"))))
                if len(window) == 2:  # the sums see only the token count
                    jobs.append(_job("sum_slots", arch, acc, label, dict(BLOCK_C=block_c, **reduce.kwargs), reduce,
                                     (("part_ptr", f"*{acc}"), ("out_ptr", f"*{acc}"))))
    for window, head_dim in [plans[0]] + volumes[:1]:
        for dtype in ("bf16", "fp32", "fp64"):
            plan = configs.AttentionPlan(_tokens(window), head_dim)
            acc = "fp64" if dtype == "fp64" else "fp32"
            for arch in TARGETS:
                jobs.append(_job("row_delta", arch, dtype, f"M{_text(window)} d{head_dim}",
                                 dict(**window_constexprs(window), HEAD_DIM=plan.head_dim, BLOCK_D=plan.block_d,
                                      PADDED=plan.padded,
                                      BLOCK_M=min(plan.padded, configs.ROW_DELTA_CONFIG.kwargs["BLOCK_M"])),
                                 configs.ROW_DELTA_CONFIG, (("out_ptr", f"*{dtype}"), ("dout_ptr", f"*{dtype}"),
                                                            ("delta_ptr", f"*{acc}"))))
    moves = [(7, 7)] + [w for w, _ in volumes[:1]]
    for kernel, names in (("window_partition", ("x_ptr", "out_ptr")), ("window_reverse", ("windows_ptr", "out_ptr"))):
        for window in moves:
            for dtype in ("fp16", "bf16", "fp32", "fp64"):
                for arch in TARGETS:
                    jobs.append(_job(kernel, arch, dtype, f"M{_text(window)}",
                                     dict(**window_constexprs(window), **configs.PARTITION_CONFIG.kwargs),
                                     configs.PARTITION_CONFIG, tuple((n, f"*{dtype}") for n in names)))
    return jobs


def _job(kernel, arch, dtype, plan, constexprs, config, pointers) -> Job:
    meta = ",".join(f"{k}={v}" for k, v in config.kwargs.items())
    return Job(kernel, arch, dtype, plan, tuple(sorted(constexprs.items())), config.num_warps, config.num_stages,
               config.maxnreg, meta, tuple(pointers))


def _ptxas() -> str:
    import triton

    return os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "ptxas")


def build(job: Job):
    """The compiled kernel of one job (triton.compile's result: .asm["ttgir"], ["ptx"], ["cubin"], .metadata)."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    fn = _kernel(job.kernel)
    constexprs = dict(job.constexprs)
    pointers = dict(job.pointer_types)
    signature = {name: "constexpr" if name in constexprs else pointers.get(name, "i32") for name in fn.arg_names}
    # pointers are 16-byte aligned, as the launcher specializes them at run time
    attrs = {(fn.arg_names.index(n),): [["tt.divisibility", 16]] for n, t in signature.items() if t.startswith("*")}
    options = {"num_warps": job.num_warps, "num_stages": job.num_stages}
    if job.maxnreg is not None:
        options["maxnreg"] = job.maxnreg
    return triton.compile(ASTSource(fn, signature, constexprs, attrs), target=GPUTarget("cuda", job.arch, 32),
                          options=options)


def compile_job(job: Job) -> dict:
    """Compile one job; registers/spills from ptxas -v, shared memory from the metadata, mma count from the PTX."""
    row = {"job": job, "error": None}
    start = time.time()
    try:
        compiled = build(job)
        ptx = compiled.asm["ptx"]
        arch = "sm_90a" if job.arch == 90 else f"sm_{job.arch}"
        with tempfile.NamedTemporaryFile("w", suffix=".ptx", delete=False) as f:
            f.write(ptx)
        try:
            # the flags Triton itself compiles the cubin with, so the numbers are the shipped binary's
            result = subprocess.run([_ptxas(), "-lineinfo", "-v", "--regAllocOptLevel=2", f"--gpu-name={arch}", f.name,
                                     "-o", os.devnull], capture_output=True, text=True, check=True)
        finally:
            os.unlink(f.name)
        registers = re.search(r"Used (\d+) registers", result.stderr)
        spills = [int(n) for n in re.findall(r"(\d+) bytes spill (?:stores|loads)", result.stderr)]
        row.update(registers=int(registers.group(1)) if registers else -1, spills=max(spills, default=0),
                   shared=compiled.metadata.shared, mma=len(re.findall(r"\bmma\.sync\.aligned", ptx)),
                   wgmma=len(re.findall(r"\bwgmma\.mma_async", ptx)))
    except Exception as error:  # reported in the table, and the run fails
        row["error"] = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"[:160]
    row["seconds"] = time.time() - start
    return row


def _format(rows: list[dict]) -> str:
    header = ("kernel", "target", "dtype", "shape", "config", "regs", "spills", "smem", "tensor-core instr", "status")
    lines = []
    for r in rows:
        job = r["job"]
        config = f"w{job.num_warps} s{job.num_stages}" + (f" maxnreg={job.maxnreg}" if job.maxnreg else "")
        config += f" {job.meta}" if job.meta else ""
        if r["error"]:
            lines.append((job.kernel, f"sm_{job.arch}", job.dtype, job.plan, config, "-", "-", "-", "-", r["error"]))
            continue
        cores = f"mma x{r['mma']}" if r["mma"] else ""
        cores += (" " if cores else "") + (f"wgmma x{r['wgmma']}" if r["wgmma"] else "")
        status = "ok" if r["spills"] == 0 else "SPILLS"
        lines.append((job.kernel, f"sm_{job.arch}", job.dtype, job.plan, config, str(r["registers"]),
                      str(r["spills"]), str(r["shared"]), cores or "none", status))
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]
    out = [" | ".join(h.ljust(w) for h, w in zip(header, widths)), "-+-".join("-" * w for w in widths)]
    out += [" | ".join(c.ljust(w) for c, w in zip(line, widths)) for line in lines]
    return "\n".join(out)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="parallel compile processes")
    parser.add_argument("--plans", choices=sorted(PLAN_SETS), default="ci",
                        help="quick: 7x7 at head_dim 32; ci: that and the largest accepted plan; full: every plan")
    parser.add_argument("--quick", action="store_const", const="quick", dest="plans", help="same as --plans quick")
    parser.add_argument("--paths", default=",".join(PATHS), help=f"dtype paths to compile (of {', '.join(PATHS)})")
    parser.add_argument("--json", default=None, help="also write the rows to this JSON file")
    args = parser.parse_args(argv)
    try:
        import triton  # noqa: F401
    except ImportError:
        print("compile report: triton is not installed", file=sys.stderr)
        return 1
    plans = PLAN_SETS[args.plans]
    paths = set(args.paths.split(","))
    jobs = [j for j in _attention_jobs(plans, ci=args.plans == "ci") if j.dtype in paths] + _small_jobs(plans)
    start = time.time()
    rows = []
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = {pool.submit(compile_job, job): i for i, job in enumerate(jobs)}
        for done, future in enumerate(as_completed(futures), 1):
            row = future.result()
            rows.append((futures[future], row))
            job = row["job"]
            state = row["error"] or f"{row['registers']} regs, {row['spills']} B spilled"
            print(f"[{done}/{len(jobs)} {time.time() - start:.0f} s] {job.kernel} sm_{job.arch} {job.dtype} "
                  f"{job.plan}: {state} ({row['seconds']:.0f} s)", file=sys.stderr, flush=True)
    rows = [row for _, row in sorted(rows, key=lambda pair: pair[0])]
    print(_format(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump([{**{k: v for k, v in r.items() if k != "job"}, "kernel": r["job"].kernel,
                        "arch": r["job"].arch, "dtype": r["job"].dtype, "plan": r["job"].plan} for r in rows], f,
                      indent=1)
    failed = [r for r in rows if r["error"]]
    spilled = [r for r in rows if not r["error"] and r["spills"]]
    print(f"\n{len(rows)} compiles in {time.time() - start:.0f} s with {args.jobs} processes: "
          f"{len(failed)} failed, {len(spilled)} spill registers")
    return 1 if failed or spilled else 0


if __name__ == "__main__":
    sys.exit(main())
