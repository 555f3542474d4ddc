"""Markdown and a plot from the rows benchmarks/gpu_bench.py wrote (complete or cut short).

    python -m benchmarks.gpu_report --rows bench_rows.jsonl --markdown bench.md [--plot bench.png]

The targets of the issue come first, each next to what was measured (or why it was not), then one table per
level and pass, triton against cuda (the evidence for the order "auto" tries them in), and the whole model.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .gpu_metrics import BACKWARD_FLOP_RATIO
from .memory import format_bytes
from .report import table

KERNELS = ("triton", "cuda")
PASS_TITLES = {"forward": "forward", "forward+backward": "forward+backward"}
LEVEL_TITLES = {"core": "attention core (qkv map -> output)",
                "branch": "attention branch (x -> qkv Linear -> attention -> proj)"}


def read_rows(path: Path) -> list[dict]:
    rows = []
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:  # the last line of a killed run
                pass
    return rows


def _first_block(row: dict) -> bool:
    """The Swin-T stage-1 shifted bf16 call the targets are stated for."""
    return row.get("stage") == 1 and row.get("shift", 0) > 0 and row.get("dtype") == "bfloat16"


def _find(rows, **match) -> dict | None:
    return next((r for r in rows if all(r.get(k) == v for k, v in match.items())), None)


def _ms(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.3f} ms" if value < 10 else f"{value:.1f} ms"


def _why_not(row: dict | None, rows_exist: bool) -> str:
    if row is None:
        return "not measured" + ("" if rows_exist else " (the run wrote no rows)")
    return f"not measured: {row.get('status')}: {row.get('reason', '')[:200]}"


def targets(rows: list[dict], dry_run: bool) -> str:
    attention = [r for r in rows if r.get("kind") == "attention" and r.get("level") == "core" and _first_block(r)]
    lines = []

    def check(name: str, threshold: float, value: float | None, shown: str, missing: str) -> None:
        if dry_run:
            value, missing = None, "not measured: dry run"
        verdict = "—" if value is None else ("met" if value >= threshold else "**not met**")
        lines.append([name, shown if value is not None else missing, verdict])

    for kernel in KERNELS:
        fwd = _find(attention, contender=kernel, pass_name="forward")
        fwd_ok = fwd if fwd and fwd.get("status") == "ok" else None
        flex = _find(attention, contender="flex", pass_name="forward")
        both = _find(attention, contender=kernel, pass_name="forward+backward")
        both_ok = both if both and both.get("status") == "ok" else None
        value = fwd_ok and fwd_ok.get("speedup_vs_eager")
        check(f"{kernel}: core forward >= 4x eager", 4.0, value, f"{value:.2f}x" if value else "",
              _why_not(fwd, bool(rows)))
        ratio = None
        if fwd_ok and flex and flex.get("status") == "ok":
            ratio = flex["median_ms"] / fwd_ok["median_ms"]
        check(f"{kernel}: core forward >= 1.5x flex_attention", 1.5, ratio, f"{ratio:.2f}x" if ratio else "",
              _why_not(fwd if not fwd_ok else flex, bool(rows)))
        value = both_ok and both_ok.get("speedup_vs_eager")
        check(f"{kernel}: core forward+backward >= 3x eager", 3.0, value, f"{value:.2f}x" if value else "",
              _why_not(both, bool(rows)))
        fraction = fwd_ok and fwd_ok.get("floor_fraction")
        shown = (f"{fraction:.0%} ({fwd_ok['bytes_per_s'] / 1e12:.2f} TB/s)" if fraction else "")
        check(f"{kernel}: core forward >= 70% of the HBM byte floor", 0.7, fraction, shown,
              _why_not(fwd, bool(rows)) if not fwd_ok else "HBM peak unknown")
    for pass_name, threshold in (("training step", 1.3), ("inference", 1.5)):
        row = _find(rows, kind="end_to_end", mode="eager", pass_name=pass_name, contender="patched")
        value = row.get("speedup_vs_unpatched") if row and row.get("status") == "ok" else None
        check(f"end to end, eager: {pass_name} >= {threshold}x unpatched HF", threshold, value,
              f"{value:.2f}x" if value else "", _why_not(row, bool(rows)))
    head = ("Targets, on Swin-T stage 1 (56x56, C96, 3 heads, M7, shift 3), batch 128, bf16; end to end: HF "
            "`SwinForImageClassification` Swin-T, batch 128, bf16 autocast. \"eager\" is the official structure "
            "in PyTorch (at the core level, the unfused reference).")
    return head + "\n\n" + table(["target", "measured", "verdict"], lines)


def attention_tables(rows: list[dict]) -> list[str]:
    sections = []
    for level in ("core", "branch"):
        for pass_name in PASS_TITLES:
            chosen = [r for r in rows if r.get("kind") == "attention" and r.get("level") == level
                      and r.get("pass_name") == pass_name]
            if not chosen:
                continue
            body, skipped = [], {}
            for r in chosen:
                if r.get("status") != "ok":
                    skipped.setdefault(f"{r['contender']}: {r.get('status')}: {r.get('reason', '')[:240]}", []).append(
                        f"{r['shape_id']} {r['dtype']}")
                    continue
                speedup = r.get("speedup_vs_eager")
                bandwidth = "—"
                if r.get("bytes_per_s"):
                    bandwidth = f"{r['bytes_per_s'] / 1e9:.0f} GB/s"
                    if r.get("floor_fraction") is not None:
                        bandwidth += f" ({r['floor_fraction']:.0%})"
                again = f" (run {r['run']})" if r.get("run", 1) > 1 else ""
                body.append([f"{r['shape_id']} {r['dtype']}{again}", r["contender"], _ms(r["median_ms"]) + _spread(r),
                             f"{speedup:.2f}x" if speedup else "—", format_bytes(r.get("peak_bytes")), bandwidth,
                             f"{r['tflops']:.1f}", "—" if r.get("error") is None else f"{r['error']:.1e}",
                             f"{r.get('prepare_s', 0):.1f} s", str(r.get("rounds", ""))])
            parts = [f"### {LEVEL_TITLES[level]}, {pass_name}"]
            if body:
                header = ["shape dtype", "contender", "median (min–max)", "vs eager", "peak memory",
                          "floor bytes/s (of HBM peak)" if level == "core" else "bytes/s", "TFLOP/s",
                          "error vs reference", "check + compile", "rounds"]
                parts.append(table(header, body))
            if skipped:
                parts.append("Not timed:\n\n" + "\n".join(f"- {reason} ({', '.join(sorted(set(where))[:6])})"
                                                          for reason, where in skipped.items()))
            sections.append("\n\n".join(parts))
    return sections


def triton_vs_cuda(rows: list[dict]) -> str | None:
    pairs = {}
    for r in rows:
        if r.get("kind") == "attention" and r.get("contender") in KERNELS and r.get("status") == "ok":
            pairs.setdefault((r["level"], r["shape_id"], r["dtype"], r["pass_name"]), {})[r["contender"]] = r
    body = []
    for (level, shape, dtype, pass_name), found in pairs.items():
        if len(found) == 2:
            ratio = found["cuda"]["median_ms"] / found["triton"]["median_ms"]
            faster = "triton" if ratio > 1 else "cuda"
            body.append([level, f"{shape} {dtype}", pass_name, _ms(found["triton"]["median_ms"]),
                         _ms(found["cuda"]["median_ms"]), f"{faster} by {max(ratio, 1 / ratio):.2f}x"])
    if not body:
        return None
    wins = sum(1 for row in body if row[-1].startswith("triton"))
    return ("### triton against cuda\n\n"
            f"Where both ran: triton faster in {wins} of {len(body)} (\"auto\" tries triton first on CUDA tensors).\n\n"
            + table(["level", "shape dtype", "pass", "triton", "cuda", "faster"], body))


def end_to_end_table(rows: list[dict]) -> str | None:
    chosen = [r for r in rows if r.get("kind") == "end_to_end"]
    if not chosen:
        return None
    body, skipped = [], []
    for r in chosen:
        if r.get("status") != "ok":
            skipped.append(f"- {r['mode']} {r['pass_name']} {r['contender']}: {r.get('status')}: "
                           f"{r.get('reason', '')[:240]}")
            continue
        speedup = r.get("speedup_vs_unpatched")
        again = f" (run {r['run']})" if r.get("run", 1) > 1 else ""
        body.append([r.get("library", "transformers") + again, r["mode"], r["pass_name"], r["contender"],
                     str(r["batch"]), _ms(r["median_ms"]) + _spread(r),
                     f"{r['images_per_s']:.0f}", f"{speedup:.2f}x", format_bytes(r.get("peak_bytes")),
                     f"{r.get('prepare_s', 0):.1f} s",
                     "—" if r.get("difference") is None else f"{r['difference']:.1e}"])
    parts = ["### End to end: Swin-T classifiers (HF transformers, timm, torchvision), patched against unpatched"]
    if body:
        parts.append(table(["library", "mode", "pass", "model", "batch", "median (min–max)", "images/s", "vs unpatched", "peak memory",
                            "first call", "logit difference"], body))
    profiles = profile_table(chosen)
    if profiles:
        parts.append(profiles)
    if skipped:
        parts.append("Not timed:\n\n" + "\n".join(skipped))
    return "\n\n".join(parts)


def volume_table(rows: list[dict]) -> str | None:
    """The 3-D rows: Video Swin and SwinUNETR patched against unpatched, and the 3-D attention core."""
    chosen = [r for r in rows if r.get("kind") == "volume"]
    if not chosen:
        return None
    body, skipped = [], []
    for r in chosen:
        if r.get("status") != "ok":
            skipped.append(f"- {r.get('what', r.get('group_label', '?'))}: {r.get('status')}: "
                           f"{r.get('reason', '')[:240]}")
            continue
        base, fused = r["contenders"]
        body.append([r["what"], r["pass_name"], f"{base} / {fused}",
                     f"{_ms(r['median_ms'][base])} / {_ms(r['median_ms'][fused])}", f"{r['speedup']:.2f}x",
                     f"{format_bytes(r['peak_bytes'][base])} / {format_bytes(r['peak_bytes'][fused])}",
                     f"{r['memory_ratio']:.2f}", f"{r['difference']:.1e}"])
    parts = ["### 3-D: Video Swin and SwinUNETR volumes, and the 3-D attention core (GPU: bf16 autocast and a bf16 core; the CPU dry run: fp32)"]
    if body:
        parts.append(table(["what", "pass", "baseline / fused", "median", "speed-up", "peak memory", "memory ratio",
                            "difference"], body))
    if skipped:
        parts.append("Not timed:\n\n" + "\n".join(skipped))
    return "\n\n".join(parts)


def _spread(row: dict) -> str:
    if row.get("min_ms") is None or row.get("max_ms") is None:
        return ""
    return f" ({row['min_ms']:.3g}–{row['max_ms']:.3g})"


def profile_table(rows: list[dict]) -> str | None:
    """One profiled eager step per model: where the time goes per Swin block, and whether the host waits."""
    body = []
    for r in rows:
        p = r.get("profile")
        if not p:
            continue
        if "error" in p:
            body.append([r.get("library", "transformers"), r["pass_name"], r["contender"], p["error"][:120]] +
                        ["—"] * 6)
            continue
        syncs = ", ".join(f"{k} x{v}" for k, v in p["syncs"].items()) or "none"
        body.append([r.get("library", "transformers"), r["pass_name"], r["contender"], str(p["blocks"]),
                     _ms(p["block_host_ms"]), _ms(p["block_gpu_ms"]), _ms(p["step_host_ms"]),
                     _ms(p["gpu_busy_ms"]), _ms(p["gpu_idle_ms"]), syncs])
    if not body:
        return None
    return ("One step under torch.profiler (eager): host time of a Swin block's forward (entry to return) and "
            "GPU time of the kernels it launched, per block; the step's host time, GPU busy time and GPU idle "
            "time (wall minus busy); device-to-host synchronising calls inside the step.\n\n" +
            table(["library", "pass", "model", "blocks", "host per block", "GPU per block", "step host",
                   "GPU busy", "GPU idle", "synchronising calls"], body))


def conventions(meta: dict) -> str:
    hbm = meta.get("hbm_peak_bytes_per_s")
    copy = meta.get("copy_bytes_per_s")
    lines = [
        "Conventions: medians of interleaved rounds timed with CUDA events, L2 flushed before every call, the same "
        "fresh random inputs for every contender; each contender checked once against the reference first "
        "(\"error vs reference\": largest difference relative to the largest reference value). Byte floor of the "
        "core: read qkv and write the output once (forward 4C, backward 7C, forward+backward 11C elements per "
        f"token). FLOPs: 4·N·d per query row and head forward, the backward {BACKWARD_FLOP_RATIO}x that "
        "(FlashAttention's count), the branch adding its two Linears.",
        f"HBM peak: {hbm / 1e12:.2f} TB/s ({meta.get('hbm_source')})" if hbm else
        f"HBM peak: unknown ({meta.get('hbm_source')})",
    ]
    if copy:
        lines.append(f"A device-to-device copy reaches {copy / 1e12:.2f} TB/s (read + write).")
    return " ".join(lines)


def markdown(rows: list[dict], plot_note: str | None = None) -> str:
    meta = next((r for r in rows if r.get("kind") == "meta"), {})
    end = next((r for r in reversed(rows) if r.get("kind") == "end"), None)
    title = "## GPU benchmarks" + (" (dry run on the CPU: code path only, not a measurement)"
                                   if meta.get("dry_run") else "")
    facts = (f"{meta.get('device', '?')}, torch {meta.get('torch')}, CUDA {meta.get('cuda')}, triton "
             f"{meta.get('triton')}; \"auto\" picks `{meta.get('auto_backend')}` for these calls. ")
    facts += (end["text"] + f" in {end['seconds']:.0f} s." if end
              else "The run ended without its closing row (killed): what follows is what it had measured.")
    parts = [title, facts, targets(rows, bool(meta.get("dry_run"))), conventions(meta)]
    parts += attention_tables(rows)
    parts += [s for s in (triton_vs_cuda(rows), end_to_end_table(rows), volume_table(rows)) if s]
    if plot_note:
        parts.append(plot_note)
    return "\n\n".join(parts) + "\n"


def plot(rows: list[dict], path: Path) -> str:
    """bench.png: speed-up over eager of the first block's core, and the kernels' share of the HBM peak."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "No plot: matplotlib is not installed here."
    first = [r for r in rows if r.get("kind") == "attention" and r.get("level") == "core" and _first_block(r)
             and r.get("status") == "ok" and r.get("speedup_vs_eager")]
    bandwidth = [r for r in rows if r.get("kind") == "attention" and r.get("level") == "core"
                 and r.get("contender") in KERNELS and r.get("pass_name") == "forward" and r.get("status") == "ok"
                 and r.get("floor_fraction") is not None and r.get("dtype") == "bfloat16"]
    if not first and not bandwidth:
        return "No plot: no GPU measurement to draw."
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
    for offset, pass_name in enumerate(PASS_TITLES):
        chosen = [r for r in first if r["pass_name"] == pass_name]
        axes[0].bar([i + 0.4 * offset for i in range(len(chosen))], [r["speedup_vs_eager"] for r in chosen], 0.4,
                    label=pass_name)
        if offset == 0:
            axes[0].set_xticks(range(len(chosen)), [r["contender"] for r in chosen], rotation=30)
    axes[0].axhline(1.0, color="grey", linewidth=0.8)
    axes[0].set_title("core, Swin-T stage 1 shifted, bf16, B128: speed-up over eager")
    axes[0].legend()
    for kernel in KERNELS:
        chosen = [r for r in bandwidth if r["contender"] == kernel]
        axes[1].plot([r["shape_id"] for r in chosen], [r["floor_fraction"] for r in chosen], "o-", label=kernel)
    axes[1].axhline(0.7, color="grey", linestyle="--", linewidth=0.8, label="target 70%")
    axes[1].set_title("core forward, bf16: byte floor / time, share of HBM peak")
    axes[1].tick_params(axis="x", rotation=30)
    axes[1].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return f"Plot: `{path.name}`."


def write(rows_path: Path, markdown_path: Path, plot_path: Path | None = None) -> None:
    rows = read_rows(rows_path)
    note = plot(rows, plot_path) if plot_path else None
    markdown_path.write_text(markdown(rows, note))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", required=True)
    parser.add_argument("--markdown", required=True)
    parser.add_argument("--plot")
    args = parser.parse_args(argv)
    write(Path(args.rows), Path(args.markdown), Path(args.plot) if args.plot else None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
