"""Markdown for results/REPORT.md: machine, backend checks, the comparison tables, the complexity study."""

from __future__ import annotations

from .contenders import BASELINE, CONTENDERS, contender_label
from .harness import PROBLEM_PREFIXES, PassResult
from .memory import format_bytes
from .workload import LEVEL_TITLES, LEVELS, PASSES


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def machine_section(info: dict[str, str]) -> str:
    return "## Machine\n\n" + table(["", ""], [[k, v] for k, v in info.items()])


def checks_section(results) -> str:
    rows, failed = [], 0
    for r in results:
        if r.skipped:
            rows.append([r.backend, r.device, r.what, r.case, str(r.dtype).removeprefix("torch."), "—", "—",
                         f"skipped: {r.skipped}"])
            continue
        failed += not r.passed
        rows.append([r.backend, r.device, r.what, r.case, str(r.dtype).removeprefix("torch."), f"{r.max_abs_error:.2e}",
                     f"{r.relative_error:.2e}", "ok" if r.passed else "**FAILED**"])
    ran = sum(1 for r in results if not r.skipped)
    head = (f"## Backends against the fp64 reference\n\nForward output and every input gradient (`qkv`, `pad_qkv`, "
            f"`bias` for the core; `x` for the module) against the PyTorch reference in float64; the error is the "
            f"largest over output and gradients. {ran - failed}/{ran} checks pass (tolerance: 1e-5 relative "
            f"in fp32, 1e-10 in fp64). The reference's own fp32 rows show PyTorch's rounding error for scale.\n\n")
    return head + table(["backend", "device", "entry", "case", "dtype", "max abs error", "relative", "result"], rows)


def _ms(seconds: float) -> str:
    ms = seconds * 1e3
    return f"{ms:.3f} ms" if ms < 10 else f"{ms:.1f} ms"


def _shape_text(r) -> str:
    s = r.shape
    return (f"{s.model} stage{s.stage} {s.height}x{s.width} C{s.channels} h{s.heads} M{s.window} shift{s.shift} "
            f"B{s.batch} {str(r.dtype).removeprefix('torch.')}")


def comparison_table(results: list[PassResult], level: str) -> tuple[str, dict[str, str]]:
    """One row per (shape, contender), for each pass its time (x vs reference) and peak memory (x vs reference).

    Returns the markdown table and {"contender (passes)": reason} for what could not run.
    """
    passes = [p for p in PASSES if any(r.pass_name == p and r.level == level for r in results)]
    baseline = {r.key: r for r in results if r.contender == BASELINE and r.timing}
    cells: dict[tuple, dict] = {}
    skips: dict[str, str] = {}
    for r in results:
        if r.level != level:
            continue
        row = cells.setdefault((_shape_text(r), r.contender, r.dtype), {})
        if r.skipped:
            skips.setdefault((CONTENDERS[r.contender].label, r.skipped), []).append(r.pass_name)
            continue
        ref = baseline.get(r.key)
        time_text = _ms(r.timing.median_s)
        if ref:
            time_text += f" ({ref.timing.median_s / r.timing.median_s:.2f}×)"
        memory = format_bytes(r.peak_bytes)
        if ref and ref.peak_bytes:
            memory += f" ({r.peak_bytes / ref.peak_bytes:.2f}×)"
        row[r.pass_name] = (time_text, memory)
        if r.error is not None:
            row["error"] = max(row.get("error", 0.0), r.error)
    header = ["shape", "contender"]
    for p in passes:
        header += [f"{p} time (speed-up)", f"{p} peak memory (ratio)"]
    header.append("max error")
    rows = []
    for (shape, key, dtype), row in cells.items():
        if not any(p in row for p in passes):
            continue
        line = [shape, contender_label(key, dtype)]
        for p in passes:
            line += list(row.get(p, ("—", "—")))
        line.append(f"{row['error']:.1e}" if "error" in row else ("reference" if key == BASELINE else "—"))
        rows.append(line)
    reasons = {f"{label} ({', '.join(dict.fromkeys(passes_skipped))})": why
               for (label, why), passes_skipped in skips.items()}
    return table(header, rows), reasons


def comparison_section(results: list[PassResult], threads: int, not_run: list[str] = ()) -> str:
    parts = [
        "## Speed and memory, side by side\n",
        f"Median of interleaved rounds after a checked warm-up call (torch CPU threads: {threads}); the contenders "
        "of one shape and pass ran in turns, on the same inputs. *Speed-up*: the reference's median time divided "
        "by the contender's (>1 is faster). *Peak memory*: the most bytes the call itself had allocated at once "
        "(allocator counts; for a backward, on top of what its forward saved), with its ratio to the reference's. "
        "*Max error*: largest deviation from the reference (output for the forward, input gradient otherwise), "
        "relative to the reference's largest magnitude. *forward* is inference (no autograd graph); "
        "*backward* times the gradients of inputs and weights from a graph built untimed; *forward+backward* both. "
        "The cpp rows name the instruction-set build of the kernels that ran (see the machine table).",
    ]
    if not_run:
        parts.append("\n**Out of time:** the comparison used up its time budget; not run: "
                     + "; ".join(not_run) + ".")
    for level in LEVELS:
        text, skips = comparison_table(results, level)
        if not any(r.level == level for r in results):
            continue
        parts.append(f"\n### {LEVEL_TITLES[level]}\n")
        parts.append(text)
        if skips:
            problems = {who: why for who, why in skips.items() if why.startswith(PROBLEM_PREFIXES)}
            if problems:
                parts.append("\n**Problems** (checked against the reference before timing, so not timed):\n")
                parts += [f"- **{who}**: {why}" for who, why in problems.items()]
            parts.append("\nNot run here:\n")
            parts += [f"- {who}: {why}" for who, why in skips.items() if who not in problems]
    return "\n".join(parts)


def complexity_section(result) -> str:
    r = result
    flop_rows = []
    for row in sorted(r.flops, key=lambda x: (not x.divisible, x.side)):
        flop_rows.append([f"{row.side}²" + ("" if row.divisible else f" (pad → {row.padded}²)"),
                          f"{row.msa:.4e}", f"{2 * row.omega_msa:.4e}",
                          f"{row.wmsa_official:.4e}", f"{row.wmsa_fused:.4e}", f"{2 * row.omega_wmsa:.4e}",
                          ("exact" if row.divisible else "padded forms exact") if row.matches else "**MISMATCH**"])
    ex = r.example
    parts = [
        "## Complexity: W-MSA vs global MSA\n",
        f"### FLOPs counted vs the paper's formulas (C = {r.channels}, {r.heads} heads, M = {r.window}, batch 1)\n",
        "Ω(MSA) = 4hwC² + 2(hw)²C and Ω(W-MSA) = 4hwC² + 2M²hwC count multiply-adds: 3hwC² for the qkv Linear, "
        "hwC² for proj, and (hw)²C or M²hwC for each of q·kᵀ and P·v. `torch.utils.flop_counter.FlopCounterMode` "
        "counts 2 FLOPs per multiply-add of mm/addmm/bmm, so where h and w are multiples of M the counts must equal "
        "2·Ω exactly. Counting runs on meta tensors (shapes only), so any size is cheap.\n",
        table(["h = w", "MSA counted", "2·Ω(MSA)", "W-MSA counted (official)", "W-MSA counted (fused module)",
               "2·Ω(W-MSA)", "check"], flop_rows),
        "\nWhat the formulas leave out: the softmax (exp, max, sum, divide over every score), the scale, the "
        "relative-bias and shift-mask adds (each O(M²hw·heads) — or O((hw)²·heads) for MSA), the Linears' bias adds, "
        "and the pad / roll / partition / reverse copies (pure data movement, no FLOPs, but memory traffic). None of "
        "them is a matmul, so the counter does not count them either. When h or w is not a multiple of M, W-MSA works "
        "on the padded Hp x Wp map: the official structure pads x before its Linears, so its count is 2·Ω(W-MSA) with "
        "Hp, Wp in place of h, w; `FusedWindowAttention` runs its Linears on the h·w real tokens and only the "
        "attention on padded windows, so its count is 2·(4hwC² + 2M²·HpWp·C). Both forms match the counts exactly "
        "(the *check* column); at small sizes the padding can make W-MSA cost more than global attention.\n",
        f"**The paper's worked example** (h = w = {ex.side}, M = {ex.window}, C = {ex.channels}): "
        f"counted saving (MSA − W-MSA)/2 = {ex.counted_saving_macs:.4e} multiply-adds; formula "
        f"2(hw)²C − 2M²hwC = {ex.formula_saving_macs:.4e} — "
        + ("identical." if ex.counted_saving_macs == ex.formula_saving_macs else "**they differ**.")
        + " The paper rounds it to ≈ 4.0 × 10¹⁰.\n",
        f"### Measured: forward time and peak memory vs tokens (B = {r.batch}, C = {r.channels}, {r.heads} heads, "
        f"M = {r.window}, torch threads: {r.threads})\n",
    ]
    names = [s.name for s in r.series]
    rows = []
    for i, tokens in enumerate(r.series[0].tokens):
        side = int(round(tokens**0.5))
        rows.append([f"{side}² = {tokens}"]
                    + [f"{_ms(s.seconds[i])} / {format_bytes(s.peak_bytes[i])}" for s in r.series])
    parts.append(table(["map (tokens)"] + [f"{n}: time / peak" for n in names], rows))
    if r.sides_left_out:
        parts.append(f"\n**Out of time:** the sweep used up its time budget; maps "
                     f"{', '.join(f'{side}²' for side in r.sides_left_out)} were not measured.")
    if r.fits:
        parts.append(f"\nLog-log slopes fitted over maps of ≥ {r.fits[0].fit_from_tokens} tokens (least squares); "
                     "the FLOP formula's own slope over the same range is the fair target — Ω(MSA) only reaches 2 "
                     "once (hw)²C dominates 4hwC², i.e. for hw ≫ 2C:\n")
        parts.append(table(["series", "time slope", "memory slope", "formula FLOPs slope"],
                           [[f.name, f"{f.time_slope:.2f}", f"{f.memory_slope:.2f}", f"{f.flop_slope:.2f}"]
                            for f in r.fits]))
        parts.append("\nA time slope above the formula's means each FLOP got dearer as the map grew (for instance "
                     "once a tensor outgrows the caches); below it, fixed costs still weigh at the small end.")
    parts.append("\nCrossover (measured):\n")
    parts += [f"- {name}: {sentence}" for name, sentence in r.crossovers.items()]
    parts.append(f"\nBy the formulas, W-MSA is cheaper whenever hw > M² = {r.window**2} (a map larger than one "
                 f"window); counting padding, {r.count_crossover}.")
    if r.plots:
        parts.append("")
        parts += [f"![{title}]({name})" for title, name in r.plots.items()]
    return "\n".join(parts)
