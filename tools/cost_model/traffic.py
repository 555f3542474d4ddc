"""HBM bytes of each kernel's access pattern, and the byte floor of the call.

Each tensor a kernel touches is counted once per kernel (what the programs of one kernel re-read of it is taken
to hit L1/L2), the written part of the gradient map as the share of its columns the kernel stores, plus the
re-reads of K and V when several programs share one (window, head) (the forward's query blocks: they do not share
L2 in time, lead 5 of issue 15). Floor (DESIGN.md): forward reads qkv once and writes the output once (4C per
token), backward reads qkv and dO and writes d qkv (7C), forward+backward 11C.
"""

from __future__ import annotations

import torch

# share of a (B, H, W, 3C) gradient map a kernel writes: dK/dV two thirds, dQ one third
WRITTEN_SHARE = {("window_attention_dkdv_kernel", "dqkv_ptr"): 2 / 3,
                 ("window_attention_dq_kernel", "dqkv_ptr"): 1 / 3}


def kernel_bytes(launch, workload) -> int:
    seen = set()
    total = 0.0
    for name, value in launch.named_args().items():
        if not isinstance(value, torch.Tensor) or id(value) in seen:
            continue
        seen.add(id(value))
        total += value.numel() * value.element_size() * WRITTEN_SHARE.get((launch.kernel, name), 1.0)
    if launch.kernel == "window_attention_fwd_kernel":
        pairs = workload.windows * workload.heads
        share = launch.programs / pairs  # programs per (window, head)
        total += (share - 1) * workload.map_tokens * 2 * workload.channels * workload.element_bytes
    return int(total)


def floor_bytes(workload, part: str) -> int:
    per_token = {"forward": 4, "backward": 7}[part] * workload.channels * workload.element_bytes
    return workload.map_tokens * per_token
