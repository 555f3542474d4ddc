"""The table: one row per kernel of each call, and a total per call (forward, backward, forward+backward)."""

from __future__ import annotations

from . import hardware, model

# host path over device time beyond which a call is marked host-bound: 6 separates the stage-2 calls (measured
# device-bound in both H200 runs, ratio ~5.5) from stages 3-4 (ratio 7-19), which measured host-bound
HOST_BOUND_RATIO = 6.0


def host_bound(device_s: float, host_s: float) -> bool:
    return host_s > HOST_BOUND_RATIO * device_s


def _kind(k: dict) -> str:
    return " ".join(f"{f} x{n}" for f, n in sorted(k["tensor_core"].items())) or "none"


def build(results: list[dict], chosen) -> list[dict]:
    cal = model.calibration()
    eff = cal["efficiency"]
    rows = []
    for r, w in zip(results, chosen):
        totals = {}
        for part, data in r["parts"].items():
            t = {g.name: 0.0 for g in hardware.GPUS}
            for k in data["kernels"]:
                times = {g.name: model.kernel_time(k, g, eff) for g in hardware.GPUS}
                for g in hardware.GPUS:
                    t[g.name] += times[g.name]["time_s"]
                rows.append({"workload": r["workload"], "part": part, "kernel": k["kernel"],
                             "instructions": k["instructions"], "registers": k["registers"], "shared": k["shared"],
                             "ctas_per_sm": k["ctas_per_sm"], "tensor_core": _kind(k), "bytes": k["bytes"],
                             "floor_bytes": None, "programs": k["programs"],
                             **{f"{g.name} us": times[g.name]["time_s"] * 1e6 for g in hardware.GPUS},
                             "bound": times["H200"]["bound"]})
            totals[part] = (t, data["floor_bytes"], sum(k["bytes"] for k in data["kernels"]))
        parts = dict(totals)
        f, b = totals["forward"], totals["backward"]
        parts["forward+backward"] = ({g: f[0][g] + b[0][g] for g in f[0]}, f[1] + b[1], f[2] + b[2])
        for part in ("forward", "forward+backward"):
            t, floor, moved = parts[part]
            host = cal["host_forward_s"] if part == "forward" else cal["host_forward_backward_s"]
            device = t["H200"]
            rows.append({"workload": r["workload"], "part": part, "kernel": "TOTAL", "instructions": None,
                         "registers": None, "shared": None, "ctas_per_sm": None, "tensor_core": "",
                         "bytes": moved, "floor_bytes": floor, "programs": None,
                         **{f"{g.name} us": t[g.name] * 1e6 for g in hardware.GPUS},
                         "ratio_to_floor": device / (floor / hardware.H200.hbm_bytes_per_s),
                         "host us": host * 1e6, "isolated H200 us": max(device, host) * 1e6,
                         "bound": "host" if host_bound(device, host) else "device"})
    return rows


def _fmt(v, digits=1):
    if v is None or v == "":
        return ""
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def markdown(rows: list[dict]) -> str:
    cal = model.calibration()
    head = ("| workload | part | kernel | instr/program | regs | smem | CTAs/SM | tensor core | MB | floor MB | "
            "H100 us | H200 us | ratio to floor (H200) | host us | bound |")
    lines = [f"Static cost model, sm_90. Issue efficiency {cal['efficiency']} (fitted on {cal['fitted_on']} "
             f"forward = {cal['measured_s']['stage1 shift forward'] * 1e3:.3f} ms, H200); host path per call "
             f"{cal['host_forward_s'] * 1e3:.3f} ms forward, {cal['host_forward_backward_s'] * 1e3:.3f} ms "
             "forward+backward; 'host' = the host path exceeds "
             f"{HOST_BOUND_RATIO:g}x the device time.", "", head, "|" + "---|" * 15]
    for r in rows:
        lines.append("| " + " | ".join([
            r["workload"], r["part"], r["kernel"], _fmt(r["instructions"]), _fmt(r["registers"]), _fmt(r["shared"]),
            _fmt(r["ctas_per_sm"]), r["tensor_core"], f"{r['bytes'] / 1e6:.1f}",
            f"{r['floor_bytes'] / 1e6:.1f}" if r["floor_bytes"] else "", f"{r['H100 SXM us']:.1f}",
            f"{r['H200 us']:.1f}", _fmt(r.get("ratio_to_floor"), 2), _fmt(r.get("host us"), 0), r["bound"]]) + " |")
    return "\n".join(lines)
