"""One small forward + backward of every CUDA and Triton kernel, for compute-sanitizer (memcheck, racecheck).

    compute-sanitizer --tool memcheck python -m tools.sanitize_kernels [--backends triton,cuda]

Maps that need padding (9x10 with window 7), a shift, an unshifted 8x8 window (64 tokens: the cuda kernels'
largest), and for Triton a 12x12 window (several key blocks) and dropout; fp32, fp16 and bf16 (fp32 and the
half types take different kernel plans); partition and reverse of each case. With PYTORCH_NO_CUDA_MEMORY_CACHING=1
(the gpu-check sets it) every tensor is its own allocation, so memcheck sees accesses past a tensor's end instead
of into a neighbour in the caching allocator's pool. Exits non-zero when a backend that should run cannot.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch

import swin_kernels
from swin_kernels import backends

# (batch, height, width, heads, head_dim, window, shift)
CASES = [(2, 9, 10, 2, 32, 7, 3), (1, 8, 16, 2, 16, 8, 0)]
TRITON_CASES = [(1, 12, 13, 1, 32, 12, 5)]
# cuda: every case again with the flash kernels (SWIN_KERNELS_CUDA_KERNELS=flash, read per call), and a map without
# padding, where the flash backward runs
FLASH_CASES = [(2, 14, 14, 3, 32, 7, 3)]
DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def run_case(backend: str, case, dtype: torch.dtype, dropout_p: float = 0.0) -> None:
    b, h, w, heads, d, window, shift = case
    c = heads * d
    gen = torch.Generator(device="cuda").manual_seed(0)
    qkv = torch.randn(b, h, w, 3 * c, device="cuda", dtype=dtype, generator=gen, requires_grad=True)
    pad = torch.randn(3 * c, device="cuda", dtype=dtype, generator=gen, requires_grad=True)
    bias = torch.randn(heads, window * window, window * window, device="cuda", dtype=dtype, generator=gen,
                       requires_grad=True)
    out = swin_kernels.shifted_window_attention(qkv, heads, window, shift, pad_qkv=pad, bias=bias,
                                                dropout_p=dropout_p, backend=backend)
    out.backward(torch.randn_like(out))
    x = torch.randn(b, h, w, c, device="cuda", dtype=dtype, generator=gen, requires_grad=True)
    windows = swin_kernels.window_partition(x, window, shift, backend=backend)
    back = swin_kernels.window_reverse(windows, window, h, w, shift, backend=backend)
    back.backward(torch.randn_like(back))
    torch.cuda.synchronize()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="triton,cuda")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("no CUDA device: nothing to check", file=sys.stderr)
        return 2
    failed = 0
    for backend in args.backends.split(","):
        reason = backends.unavailable_reason(backend)
        if reason is not None:
            print(f"{backend}: cannot run here: {reason}", flush=True)
            failed += 1
            continue
        cases = [(case, None) for case in CASES + (TRITON_CASES if backend == "triton" else [])]
        if backend == "cuda":
            cases += [(case, "flash") for case in CASES + FLASH_CASES]
        for case, kernels in cases:
            for dtype in DTYPES:
                for dropout_p in (0.0, 0.1) if backend == "triton" and dtype == torch.float16 else (0.0,):
                    began = time.monotonic()
                    what = (f"{backend} {str(dtype).removeprefix('torch.')} case {case} dropout {dropout_p}"
                            + (f" kernels {kernels}" if kernels else ""))
                    saved = os.environ.pop("SWIN_KERNELS_CUDA_KERNELS", None)
                    if kernels:
                        os.environ["SWIN_KERNELS_CUDA_KERNELS"] = kernels
                    try:
                        run_case(backend, case, dtype, dropout_p)
                    except Exception as error:  # reported, and the other kernels still run
                        print(f"FAILED {what}: {type(error).__name__}: {error}", flush=True)
                        failed += 1
                        continue
                    finally:
                        os.environ.pop("SWIN_KERNELS_CUDA_KERNELS", None)
                        if saved is not None:
                            os.environ["SWIN_KERNELS_CUDA_KERNELS"] = saved
                    print(f"ran {what} in {time.monotonic() - began:.1f} s", flush=True)
    print(f"sanitize_kernels: {'all kernels ran' if not failed else f'{failed} failure(s)'}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
