"""Static GPU cost model of the Triton and CUDA kernels: ``python -m tools.cost_model`` (options: __main__.py).

For each named workload (workloads.py) the triton backend's launchers are run on meta tensors and every launch is
recorded (launches.py); each launch is compiled for sm_90 as the runtime would specialise it and disassembled
with source lines (triton_build.py, sass.py); loops are the backward branches of the SASS, mapped to the kernel's
``for ... in range(...)`` and multiplied by the trip counts those ranges take for the launch (trips.py).

Assumptions, in one place:
* Instructions per program: every instruction of a loop body runs trip-count times; code behind forward branches
  is counted as executed (an upper bound); trip counts are program 0's (the last backward slot may do fewer).
* Issue-bound time: warp-instructions / (132 SMs x 4 schedulers x efficiency x 1.75 GHz), by waves of the
  resident blocks (registers, shared memory, threads and blocks of sm_90); the efficiency falls in proportion
  below 6 resident warps per scheduler (latency not hidden). The one fitted constant, the efficiency, is fitted on
  the H200's stage-1 shifted bf16 forward (0.228 ms) of the kernels measured (commit ff9fdfa); calibration.json
  keeps the counts it was fitted on. Forward+backward is then predicted (1.240 ms measured).
* Byte-bound time: each tensor a kernel touches once per kernel at HBM bandwidth (H100 SXM 3.35 TB/s, H200
  4.8 TB/s; re-reads within a kernel hit L1/L2, except K/V re-read by several query-block programs of one
  window); gradient maps count the columns the kernel writes. Kernel time = max(issue, bytes) + 2 us.
  Head slices of token rows count the 32-byte sectors they touch (head_dim 30: 60-byte slices fetch 1.51x).
* Host path: a per-call constant (0.629 ms forward, 2.059 ms forward+backward), the event-timed medians of
  stage 4 on the H200, where the device work is ~10 us: there the timing measured the host path. An isolated call
  takes max(device, host); a call behind queued GPU work (stage 1 in the benchmark) shows the device time. A
  call whose host path exceeds 6x its device time is marked host-bound: no GPU work queued ahead of it in a
  patched block hides that. Replace the constants with benchmarks/test_host_overhead.py's numbers when measured.
* The CUDA kernels (csrc/cuda, cuda_kernels.py): nvcc -cubin for sm_90 with line info; each SASS loop is mapped
  to its C++ `for`, whose `// trips:` comment gives the count; the launches of a cuda-backend call (grid, shared
  memory from kernel_limits.h, bytes) are modelled from the launchers, then timed as above. The table compares the
  cuda and triton calls of every workload; static and per-workload counts are budgeted like the Triton kernels'.
* Not modelled: L2 residency across kernels, clock changes, tensor-core throughput limits (the FLOPs of these
  windows take ~13 us of tensor-core time at stage 1).
"""
