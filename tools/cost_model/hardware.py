"""The machine constants of the model, stated once, and the occupancy rules of sm_90."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Gpu:
    name: str
    sms: int
    clock_hz: float  # under load
    hbm_bytes_per_s: float


H100 = Gpu("H100 SXM", 132, 1.75e9, 3.35e12)
H200 = Gpu("H200", 132, 1.75e9, 4.8e12)
GPUS = (H100, H200)

# sm_90 per-SM limits
REGISTERS_PER_SM = 65536
SHARED_PER_SM = 228 * 1024
SHARED_RESERVED_PER_CTA = 1024  # the driver's reservation per block
THREADS_PER_SM = 2048
CTAS_PER_SM = 32
SCHEDULERS = 4  # warp schedulers per SM, one warp-instruction per cycle each


def ctas_per_sm(registers: int, shared: int, warps: int) -> int:
    """Resident blocks per SM: registers (allocated per warp in units of 256), shared memory, threads, blocks."""
    per_warp = math.ceil(max(registers, 1) * 32 / 256) * 256
    by_registers = REGISTERS_PER_SM // (per_warp * warps)
    by_shared = SHARED_PER_SM // (shared + SHARED_RESERVED_PER_CTA)
    return max(0, min(by_registers, by_shared, THREADS_PER_SM // (32 * warps), CTAS_PER_SM))
