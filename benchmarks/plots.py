"""PNG plots of the complexity study (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)

TIME_PNG, MEMORY_PNG, FLOPS_PNG = "complexity_time.png", "complexity_memory.png", "complexity_flops.png"


def _slope_guides(ax, tokens, values):
    """Dotted slope-1 and slope-2 lines through the first point of the largest series, for the eye."""
    x0, y0 = tokens[0], values[0]
    for slope, style in ((1, ":"), (2, "--")):
        ax.plot([x0, tokens[-1]], [y0, y0 * (tokens[-1] / x0) ** slope], style, color="grey", linewidth=0.8,
                label=f"slope {slope}")


def _loglog(series, values_of, ylabel, title, path, scale=1.0):
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for s in series:
        ax.plot(s.tokens, [v * scale for v in values_of(s)], marker="o", label=s.name)
    msa = series[0]
    _slope_guides(ax, msa.tokens, [v * scale for v in values_of(msa)])
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("tokens (h·w)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, which="both", linewidth=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def complexity_plots(result, directory) -> dict[str, str]:
    """Write the three plots into ``directory``; returns {title: file name}."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    shape = f"B={result.batch}, C={result.channels}, {result.heads} heads, M={result.window}"
    _loglog(result.series, lambda s: s.seconds, "forward time (ms)", f"Time vs tokens ({shape})",
            directory / TIME_PNG, scale=1e3)
    _loglog(result.series, lambda s: s.peak_bytes, "peak memory (MiB)", f"Peak memory vs tokens ({shape})",
            directory / MEMORY_PNG, scale=1 / 2**20)

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    rows = sorted(result.flops, key=lambda r: r.side)
    tokens = [r.side**2 for r in rows]
    ax.plot(tokens, [2 * r.omega_msa for r in rows], "-", color="C0", label="2·Ω(MSA) (formula)")
    ax.plot(tokens, [r.msa for r in rows], "o", color="C0", label="MSA counted")
    ax.plot(tokens, [2 * r.omega_wmsa for r in rows], "-", color="C1", label="2·Ω(W-MSA) (formula, h·w)")
    ax.plot(tokens, [r.wmsa_official for r in rows], "s", color="C1", mfc="none", label="W-MSA counted (official)")
    ax.plot(tokens, [r.wmsa_fused for r in rows], "x", color="C2", label="W-MSA counted (FusedWindowAttention)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("tokens (h·w)")
    ax.set_ylabel("FLOPs (FlopCounterMode)")
    ax.set_title(f"FLOPs counted vs the paper's formulas (C={result.channels}, M={result.window})")
    ax.grid(True, which="both", linewidth=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(directory / FLOPS_PNG, dpi=120)
    plt.close(fig)
    return {"Time vs tokens": TIME_PNG, "Peak memory vs tokens": MEMORY_PNG, "FLOPs counted vs formula": FLOPS_PNG}
