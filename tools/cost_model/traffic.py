"""HBM bytes of each kernel's access pattern, and the byte floor of the call.

Each tensor a kernel touches is counted once per kernel (what the programs of one kernel re-read of it is taken
to hit L1/L2), the written part of the gradient map as the share of its columns the kernel stores, plus the
re-reads of K and V when several programs share one (window, head) (the forward's query blocks: they do not share
L2 in time, lead 5 of issue 15). Head slices of token rows are counted in the 32-byte sectors they touch
(sector_factor: 1.0 for head_dim 32 in bf16, 1.51 for SwinIR's 30; row starts taken as aligned). Floor (DESIGN.md): forward reads qkv once and writes the output once (4C per
token), backward reads qkv and dO and writes d qkv (7C), forward+backward 11C.
"""

from __future__ import annotations

import torch

# share of a (B, H, W, 3C) gradient map a kernel writes: dK/dV two thirds, dQ one third
WRITTEN_SHARE = {("window_attention_dkdv_kernel", "dqkv_ptr"): 2 / 3,
                 ("window_attention_dq_kernel", "dqkv_ptr"): 1 / 3}


def sector_factor(workload, sector: int = 32) -> float:
    """32-byte sectors fetched per useful byte when each token's head slice (head_dim elements) is read from a
    row of C channels: 1 when the slices are sector-aligned, more for e.g. head_dim 30 (60-byte slices)."""
    e, d = workload.element_bytes, workload.head_dim
    fetched = 0
    for h in range(workload.heads):
        start = h * d * e
        fetched += ((start + d * e - 1) // sector - start // sector + 1) * sector
    return fetched / (workload.heads * d * e)


def kernel_bytes(launch, workload) -> int:
    # the attention kernels read and write per-head slices of token rows; the other kernels move whole rows
    rows_per_head = launch.kernel.startswith("window_attention")
    factor = sector_factor(workload) if rows_per_head else 1.0
    seen = set()
    total = 0.0
    for name, value in launch.named_args().items():
        if not isinstance(value, torch.Tensor) or id(value) in seen:
            continue
        seen.add(id(value))
        nbytes = value.numel() * value.element_size() * WRITTEN_SHARE.get((launch.kernel, name), 1.0)
        token_rows = value.dim() == 4 and value.shape[-1] % workload.channels == 0 and value.shape[0] == workload.batch
        total += nbytes * (factor if token_rows else 1.0)
    if launch.kernel == "window_attention_fwd_kernel":
        pairs = workload.windows * workload.heads
        share = launch.programs / pairs  # programs per (window, head)
        total += (share - 1) * workload.map_tokens * 2 * workload.channels * workload.element_bytes * factor
    return int(total)


def floor_bytes(workload, part: str) -> int:
    per_token = {"forward": 4, "backward": 7}[part] * workload.channels * workload.element_bytes
    return workload.map_tokens * per_token
