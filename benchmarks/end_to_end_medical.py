"""End to end, medical: MONAI SwinUNETR (spatial_dims=2) patched by swin_kernels.patch against itself unpatched.

One eager fp32 inference forward (eval, no grad) on the CPU, both contenders from the same random weights and on
the same fresh random input, checked against each other once, then timed side by side in interleaved rounds
(benchmarks.timing); medians reported. Default: feature_size 48 (SwinUNETR's default), depths (2, 2, 2, 2),
heads (3, 6, 12, 24), window 7, one 1-channel 256x256 slice (stages 128², 64², 32², 16²; the 16x16 stage pads to
21x21). ``--tiny`` runs a small model once (what the test runs).

    python -m benchmarks.end_to_end_medical [--size 256] [--batch 1] [--rounds 10] [--tiny]
"""

from __future__ import annotations

import argparse
import copy
import statistics

import torch

import swin_kernels

from .timing import interleaved_times


def build(tiny: bool, seed: int = 0):
    from monai.networks.nets import SwinUNETR

    torch.manual_seed(seed)
    if tiny:
        model = SwinUNETR(in_channels=1, out_channels=2, feature_size=12, spatial_dims=2, depths=(2, 2, 2, 2),
                          num_heads=(1, 1, 2, 2))
    else:
        model = SwinUNETR(in_channels=1, out_channels=14, feature_size=48, spatial_dims=2, depths=(2, 2, 2, 2),
                          num_heads=(3, 6, 12, 24))
    model.eval()
    patched = swin_kernels.patch(copy.deepcopy(model))
    return model, patched


def run(size: int = 256, batch: int = 1, rounds: int = 10, tiny: bool = False) -> dict:
    model, patched = build(tiny)
    g = torch.Generator().manual_seed(1)
    inputs = [torch.randn(batch, 1, size, size, generator=g) for _ in range(max(rounds, 1) + 1)]
    with torch.no_grad():
        expected, got = model(inputs[0]), patched(inputs[0])
    difference = ((got - expected).abs().max() / expected.abs().max()).item()
    result = {"size": size, "batch": batch, "relative_difference": difference,
              "blocks_patched": sum(swin_kernels.patches.is_patched(m) for m in patched.modules()),
              "threads": torch.get_num_threads()}
    if rounds == 0:
        return result
    counter = {"unpatched": 0, "patched": 0}

    def setup_for(name):
        def setup():
            counter[name] += 1
            return (inputs[1 + (counter[name] - 1) % (len(inputs) - 1)],)
        return setup

    def forward(m):
        def call(x):
            with torch.no_grad():
                return m(x)
        return call

    model(inputs[1]); patched(inputs[1])  # warm-up
    samples = interleaved_times([(forward(model), setup_for("unpatched")), (forward(patched), setup_for("patched"))],
                                rounds, torch.device("cpu"))
    result["unpatched_ms"] = 1e3 * statistics.median(samples[0])
    result["patched_ms"] = 1e3 * statistics.median(samples[1])
    result["speedup"] = result["unpatched_ms"] / result["patched_ms"]
    return result


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--tiny", action="store_true")
    args = parser.parse_args(argv)
    from tools.torchvision_compat import make_torchvision_importable

    make_torchvision_importable()
    r = run(args.size, args.batch, args.rounds, args.tiny)
    print(f"MONAI SwinUNETR 2-D, {'tiny' if args.tiny else 'feature_size 48'}, {r['batch']}x1x{r['size']}x"
          f"{r['size']}, fp32 eager inference, CPU, {r['threads']} thread(s); {r['blocks_patched']} blocks patched; "
          f"patched vs unpatched max relative difference {r['relative_difference']:.1e}")
    if "patched_ms" in r:
        print(f"unpatched {r['unpatched_ms']:.1f} ms, patched {r['patched_ms']:.1f} ms (median of {args.rounds} "
              f"interleaved rounds): {r['speedup']:.2f}x")


if __name__ == "__main__":
    main()
