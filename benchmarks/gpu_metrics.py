"""Yardsticks of the GPU benchmarks: the bytes a call must move, the FLOPs it must do, what the GPU can move.

Byte floor of the attention core (qkv map -> output), per token of the (B, H, W) map, C channels:
  forward           read qkv (3C) + write out (C)                                   =  4C elements
  backward          read qkv (3C) + read dO (C) + write dqkv (3C)                    =  7C
  forward+backward  both                                                           = 11C
Bias, pad vector and log-sum-exp are a few kilobytes or a small fraction of that, and not counted.

FLOPs of the attention core: 4·N·d per query row and head (2·N·d for q kᵀ, 2·N·d for P v), N = Mh·Mw tokens per
window, over every window row of the padded map (padded rows are computed too). The backward counts 2.5 times the
forward (five N x N x d products, the recomputed q kᵀ included, against two), as FlashAttention's benchmarks do,
so forward+backward is 3.5 times the forward. The branch adds its two Linears: 2·T·C·3C + 2·T·C·C forward over the
T = B·H·W tokens, three times that for forward+backward (the input and weight gradients).
"""

from __future__ import annotations

import torch

from .shapes import BenchShape

CORE_FLOOR_ELEMENTS = {"forward": 4, "backward": 7, "forward+backward": 11}  # per token, in units of C
BACKWARD_FLOP_RATIO = 2.5
# Peak HBM bandwidth (bytes/s) of common data-centre GPUs, by a substring of torch.cuda.get_device_name(), for
# torch builds whose device properties lack the memory clock and bus width. Most specific names first.
HBM_PEAK = (("H200", 4.8e12), ("H100 NVL", 3.9e12), ("H100 PCIe", 2.0e12), ("H100", 3.35e12), ("H800", 3.35e12),
            ("B200", 8.0e12), ("GH200", 4.0e12), ("A100-SXM4-80GB", 2.039e12), ("A100 80GB PCIe", 1.935e12),
            ("A100", 1.555e12), ("L40S", 0.864e12), ("A10", 0.6e12))


def _padded(size: int, window: int) -> int:
    return -(-size // window) * window


def core_floor_bytes(shape: BenchShape, dtype: torch.dtype, pass_name: str) -> int:
    elements = shape.batch * shape.height * shape.width * shape.channels * CORE_FLOOR_ELEMENTS[pass_name]
    return elements * torch.empty((), dtype=dtype).element_size()


def core_flops(shape: BenchShape, pass_name: str) -> float:
    tokens = shape.window * shape.window
    rows = shape.batch * _padded(shape.height, shape.window) * _padded(shape.width, shape.window)
    forward = 4.0 * rows * tokens * shape.channels  # heads x head_dim = channels
    return forward * {"forward": 1.0, "backward": BACKWARD_FLOP_RATIO, "forward+backward": 1 + BACKWARD_FLOP_RATIO}[
        pass_name]


def branch_flops(shape: BenchShape, pass_name: str) -> float:
    tokens = shape.batch * shape.height * shape.width
    linears = 2.0 * tokens * shape.channels * 4 * shape.channels
    return core_flops(shape, pass_name) + linears * {"forward": 1.0, "backward": 2.0, "forward+backward": 3.0}[
        pass_name]


def hbm_peak(device: torch.device) -> tuple[float | None, str]:
    """(peak bytes/s, where the figure comes from) of the device's memory; (None, why) when unknown."""
    if device.type != "cuda":
        return None, "not a GPU"
    props = torch.cuda.get_device_properties(device)
    clock_khz = getattr(props, "memory_clock_rate", None)
    bus_bits = getattr(props, "memory_bus_width", None)
    if clock_khz and bus_bits:  # double data rate
        return 2.0 * clock_khz * 1e3 * bus_bits / 8, "memory clock x bus width (device properties)"
    for name, peak in HBM_PEAK:
        if name in props.name:
            return peak, f"datasheet figure for {name}"
    return None, f"unknown for {props.name}"


def copy_bandwidth(device: torch.device, size_bytes: int = 1 << 30, repeats: int = 10) -> float | None:
    """Bytes/s a device-to-device copy reaches (read + write counted): what the memory delivers in practice."""
    if device.type != "cuda":
        return None
    src = torch.empty(size_bytes // 2, dtype=torch.float16, device=device).normal_()
    dst = torch.empty_like(src)
    dst.copy_(src)
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        dst.copy_(src)
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    del src, dst
    torch.cuda.empty_cache()
    times.sort()
    return 2 * size_bytes / times[len(times) // 2]
