"""Find, per plan class, the first Triton launch configuration that compiles without register spills.

    python -m tools.tune_configs [--jobs N] [--paths bf16,fp32,...] [--kind map|large|volume]
                                 [--family default|sm_80|sm_90] [--write]

A plan class is (dtype path, BLOCK_D, multi-block window); for each class and kernel (forward, dK/dV, dQ) the
candidates below are tried in order of preference (larger tiles and fewer warps first), each compiled on every
window of the class in WINDOWS, with and without dropout, every optional input present; one probe compile (sm_80,
dropout, the most tokens: the likeliest to spill) rejects most candidates before the rest are compiled. The first
one without spills anywhere wins; a class where none does is printed as unsupported. fp16 takes bf16's tiles (the
same tiles, the same registers; the compile report checks them). No GPU is needed: Triton compiles ahead of time.

``--family default`` (the default) compiles for sm_80 and sm_90 (the tiles any GPU may run); ``--family sm_80`` or
``sm_90`` for that target alone, so its tiles may be larger where only the other target spills. ``--write``
rewrites that family's section of the tile table (swin_kernels/ops/triton/tile_table.py, rendered by
render_table) and no other: tuning one architecture never overwrites another's tiles. Without it the result is
printed.

``--kind large`` (2-D windows of more than configs.MAP_TOKENS tokens) and ``--kind volume`` (3-D windows) search
the same way on their own windows (KIND_WINDOWS), but try the family's map tiles first and then, where those have
no register cap, the same tiles with maxnreg; entries equal to what the family takes anyway are not written.
Classes the backend declines (configs.UNSUPPORTED) are skipped.
"""

from __future__ import annotations

import os

os.environ.pop("TRITON_INTERPRET", None)  # real compilation: must be decided before triton is imported

import argparse  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402
import time  # noqa: E402
from concurrent.futures import ProcessPoolExecutor  # noqa: E402

from tools import compile_report as report  # noqa: E402

MAXNREG = 255
# (rows, cols, warps, maxnreg) in order of preference
TENSOR_CORE = {
    "fwd": [(64, 64, 4, None), (64, 32, 4, None), (32, 64, 4, None), (32, 32, 4, None), (64, 64, 8, None),
            (32, 32, 8, None), (32, 32, 8, MAXNREG), (16, 32, 4, None), (16, 16, 4, None), (16, 16, 8, MAXNREG)],
    "dkdv": [(64, 16, 4, None), (64, 16, 4, MAXNREG), (32, 16, 4, None), (32, 16, 4, MAXNREG), (32, 16, 8, None),
             (16, 16, 4, None), (16, 16, 8, None), (16, 16, 8, MAXNREG)],
    "dq": [(64, 32, 4, None), (64, 32, 4, MAXNREG), (64, 16, 4, None), (32, 32, 4, None), (32, 16, 4, None),
           (32, 16, 4, MAXNREG), (32, 16, 8, None), (16, 16, 4, None), (16, 16, 8, MAXNREG)],
}
FMA = {
    "fwd": [(32, 32, 8, MAXNREG), (32, 16, 8, MAXNREG), (16, 16, 8, MAXNREG), (16, 16, 4, MAXNREG)],
    "dkdv": [(32, 16, 8, MAXNREG), (16, 16, 8, MAXNREG), (16, 16, 4, MAXNREG)],
    "dq": [(32, 16, 8, MAXNREG), (16, 16, 8, MAXNREG), (16, 16, 4, MAXNREG)],
}
PATHS = ("bf16", "tf32", "tf32x3", "fp32", "fp64")
BLOCK_DS = (32, 64, 128)


# ptxas is not monotonic in the tile sizes: a candidate must compile clean on every window of its class that the
# compile report covers (and on the largest single block), with and without dropout.
WINDOWS = ((4, 8), (7, 7), (8, 8), (12, 12), (16, 16))
KIND_WINDOWS = {
    "map": WINDOWS,
    "large": ((20, 20), (24, 24)),  # 400 and 576 tokens: 7 and 9 blocks of 64 (13 and 18 of 32)
    # single blocks (32, 64 tokens), then swin3d's 8x7x7, SwinUNETR's 7x7x7 and a thin 2x7x7
    "volume": ((2, 4, 4), (4, 4, 4), (2, 7, 7), (7, 7, 7), (8, 7, 7)),
}


def _tokens(window) -> int:
    n = 1
    for m in window:
        n *= m
    return n


def representatives(path: str, multi: bool, kind: str = "map") -> list[tuple[int, ...]]:
    import torch

    from swin_kernels.ops.triton import configs

    element, precision = report.PATHS[path]
    dtype = getattr(torch, report.TORCH_DTYPES[element])
    return [w for w in KIND_WINDOWS[kind]
            if (configs.attention_plan(_tokens(w), 32, dtype, precision).num_blocks > 1) == multi]


def candidate_jobs(path: str, block_d: int, multi: bool, kernel: str, candidate, kind: str = "map",
                   targets=report.TARGETS) -> list:
    jobs = []
    for window in representatives(path, multi, kind):
        for dropout in (False, True):
            jobs += _window_jobs(path, block_d, kernel, candidate, window, dropout, targets)
    return jobs


def _window_jobs(path: str, block_d: int, kernel: str, candidate, window, dropout: bool,
                 targets=report.TARGETS) -> list:
    import torch

    from swin_kernels.ops.triton import configs

    element, precision = report.PATHS[path]
    plan = configs.attention_plan(_tokens(window), block_d, getattr(torch, report.TORCH_DTYPES[element]), precision,
                                  volume=report.is_volume(window))
    rows, cols, warps, maxnreg = candidate
    rows, cols = min(rows, plan.block), min(cols, plan.block)
    acc_type = "fp64" if element == "fp64" else "fp32"
    flags = dict(**report.window_constexprs(window), HEAD_DIM=block_d, BLOCK_D=plan.block_d, HAS_PAD=True,
                 HAS_SHIFT=True, DOT_UPCAST=False, INPUT_PRECISION=plan.input_precision, DROPOUT=dropout)
    data = {n: f"*{element}" for n in ("qkv_ptr", "pad_ptr", "out_ptr", "dout_ptr", "dqkv_ptr")}
    acc = {n: f"*{acc_type}" for n in ("table_ptr", "lse_ptr", "delta_ptr", "dbias_part_ptr", "dpad_part_ptr")}
    pointers = tuple(sorted({**data, **acc, "seed_ptr": "*i64",
                             **{n: "fp32" for n in report._FLOAT_ARGS}}.items()))
    label = f"{path} d{block_d} M{report._text(window)} {rows}x{cols} w{warps} r{maxnreg} dropout={dropout}"
    if kernel == "fwd":
        config = configs.LaunchConfig(warps, 1, maxnreg, (("BLOCK_M", rows), ("BLOCK_N", cols), ("WINDOWS", 1)))
        constexprs = dict(flags, NUM_KEY_BLOCKS=plan.padded // cols, FAST_LOG2=acc_type == "fp32", **config.kwargs)
    else:
        config = configs.LaunchConfig(warps, 1, maxnreg, (("BLOCK", rows), ("SUB", cols)))
        flag = "NEED_DPAD" if kernel == "dkdv" else "NEED_DBIAS"
        blocks = plan.padded // rows
        constexprs = dict(flags, NUM_BLOCKS=blocks, **config.kwargs, **{flag: True},
                          SPLIT_BLOCKS=plan.kind != "map" and blocks > 1)  # configs.AttentionPlan.split_blocks
        if kernel == "dq":
            constexprs["SLOT_N"] = configs.dbias_slot_tokens(plan.tokens, plan.padded, rows, cols)
    return [report._job(f"attention_{kernel}", arch, path, label, constexprs, config, pointers)
            for arch in targets]


def _clean(row: dict) -> bool:
    return row["error"] is None and row["spills"] == 0


def probe_first(jobs: list) -> list:
    """The jobs with the likeliest to spill first: sm_80 (its ptxas targets fewer registers), dropout, the most
    tokens."""
    def weight(job):
        constexprs = dict(job.constexprs)
        tokens = constexprs["WINDOW_D"] * constexprs["WINDOW_H"] * constexprs["WINDOW_W"]
        return job.arch == 80, constexprs["DROPOUT"], tokens

    return sorted(jobs, key=weight, reverse=True)


def _first_candidates(path: str, block_d: int, multi: bool, kernel: str, table: dict, kind: str,
                      family: str = "default") -> list:
    """Candidates in order: for the map, the table's; for another kind, the family's map choice first, then its
    tiles with maxnreg, then the table's."""
    candidates = list(table[kernel])
    if kind == "map":
        return candidates
    from swin_kernels.ops.triton import configs

    shape = configs.tile_shapes(family, "map", (path, block_d, multi))[("fwd", "dkdv", "dq").index(kernel)]
    first = [(shape.rows, shape.cols, shape.warps, shape.maxnreg)]
    if shape.maxnreg is None:
        first.append((shape.rows, shape.cols, shape.warps, MAXNREG))
    return first + [c for c in candidates if c not in first]


# ------------------------------------------------------------------------------------------- the tile table
TABLE = Path(__file__).resolve().parents[1] / "swin_kernels" / "ops" / "triton" / "tile_table.py"
KIND_ORDER = ("map", "large", "volume")
PATH_ORDER = ("bf16", "tf32", "tf32x3", "fp32", "fp64")


def render_table(tiles: dict) -> str:
    """The text of tile_table.py holding ``tiles`` (family -> key -> 3 (rows, cols, warps, maxnreg)), in a
    fixed order, so that a rewrite changes only the entries that changed."""
    from swin_kernels.ops.triton import configs, tile_table

    def order(key):
        kind, path, block_d, multi = key
        return KIND_ORDER.index(kind), PATH_ORDER.index(path), block_d, multi

    # the file's docstring is kept as it is: it is written once, in the table itself
    lines = [f'"""{tile_table.__doc__}"""', "", "TILES = {"]
    for family in configs.FAMILIES:
        entries = tiles.get(family, {})
        if not entries:
            lines.append(f"    {family!r}: {{}},")
            continue
        lines.append(f"    {family!r}: {{")
        for key in sorted(entries, key=order):
            lines.append(f"        {key!r}: ({', '.join(repr(tuple(s)) for s in entries[key])}),")
        lines.append("    },")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _as_tuple(shape) -> tuple:
    """(rows, cols, warps, maxnreg) of a configs.KernelShape or of such a tuple."""
    if isinstance(shape, tuple):
        return shape
    return shape.rows, shape.cols, shape.warps, shape.maxnreg


def updated_tiles(tiles: dict, family: str, chosen: dict) -> dict:
    """``tiles`` with ``chosen`` ((kind, path, block_d, multi) -> 3 tuples) written into ``family`` alone.
    Beyond the default's map entries (the base of every look-up), an entry equal to what the family would take
    without it is left out (and an old one removed): each section holds only its differences."""
    from swin_kernels.ops.triton import configs

    out = {f: dict(entries) for f, entries in tiles.items()}
    section = out.setdefault(family, {})
    for key, shapes in chosen.items():
        section.pop(key, None)
        if (family, key[0]) != ("default", "map"):
            inherited = configs.tile_shapes(family, key[0], key[1:], out)
            if [_as_tuple(s) for s in inherited] == [_as_tuple(s) for s in shapes]:
                continue
        section[key] = tuple(_as_tuple(s) for s in shapes)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--paths", default=",".join(PATHS))
    parser.add_argument("--kind", choices=sorted(KIND_WINDOWS), default="map",
                        help="map: 2-D windows up to configs.MAP_TOKENS; large: 2-D windows beyond; volume: 3-D")
    parser.add_argument("--family", default="default",
                        help="default: spill-free on sm_80 and sm_90; sm_80 / sm_90: on that target alone")
    parser.add_argument("--write", action="store_true",
                        help="write the result into the family's section of swin_kernels/ops/triton/tile_table.py")
    args = parser.parse_args(argv)
    from swin_kernels.ops.triton import configs

    if args.family not in configs.FAMILIES:
        parser.error(f"--family must be one of {', '.join(configs.FAMILIES)}")
    targets = report.TARGETS if args.family == "default" else (int(args.family.removeprefix("sm_")),)
    kind = args.kind
    classes = []
    for path in args.paths.split(","):
        for block_d in BLOCK_DS:
            for multi in (False, True):
                if kind != "map" and ((path, block_d, multi) in configs.UNSUPPORTED
                                      or (path == "tf32x3" and block_d > 64)  # exact there (configs.py)
                                      or not representatives(path, multi, kind)):
                    continue
                classes.append((path, block_d, multi))
    searches = {}
    for path, block_d, multi in classes:
        table = FMA if path in ("fp32", "fp64") else TENSOR_CORE
        for kernel in ("fwd", "dkdv", "dq"):
            searches[(path, block_d, multi, kernel)] = _first_candidates(path, block_d, multi, kernel, table, kind,
                                                                         args.family)
    chosen: dict = {}
    start = time.time()
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        rounds = 0
        while searches:
            rounds += 1
            batch = {key: probe_first(candidate_jobs(*key, candidates[0], kind, targets))
                     for key, candidates in searches.items()}
            # the probe (the most registers: the largest window with dropout, sm_80) rejects most candidates alone
            probes = list(pool.map(report.compile_job, [jobs[0] for jobs in batch.values()]))
            passed = [key for key, row in zip(batch, probes) if _clean(row)]
            flat = [(key, job) for key in passed for job in batch[key][1:]]
            results = list(pool.map(report.compile_job, [job for _, job in flat]))
            by_key: dict = {key: [row] for key, row in zip(batch, probes)}
            for (key, _), row in zip(flat, results):
                by_key[key].append(row)
            for key, rows in by_key.items():
                ok = all(_clean(r) for r in rows)
                state = "ok" if ok else ", ".join(r["error"] or f"{r['spills']} B" for r in rows)
                print(f"[round {rounds}, {time.time() - start:.0f} s] {key} {searches[key][0]}: {state}",
                      file=sys.stderr, flush=True)
                if ok:
                    chosen[key] = searches.pop(key)[0]
                else:
                    searches[key].pop(0)
                    if not searches[key]:
                        chosen[key] = None
                        del searches[key]
    found = {}
    print(f"# {args.family}, {kind}: (forward, dK/dV, dQ) as (rows, cols, warps, maxnreg)")
    for path, block_d, multi in classes:
        shapes = [chosen[(path, block_d, multi, k)] for k in ("fwd", "dkdv", "dq")]
        if any(s is None for s in shapes):
            print(f"# ({kind!r}, {path!r}, {block_d}, {multi}): no spill-free configuration ({shapes})")
            continue
        found[(kind, path, block_d, multi)] = tuple(shapes)
        print(f"{(kind, path, block_d, multi)!r}: {tuple(shapes)!r},")
    if args.write:
        from swin_kernels.ops.triton import tile_table

        TABLE.write_text(render_table(updated_tiles(tile_table.TILES, args.family, found)))
        print(f"written to the {args.family!r} section of {TABLE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
