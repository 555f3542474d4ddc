"""pytest-benchmark: torchvision's swin3d_t and MONAI's SwinUNETR (spatial_dims=3) patched by swin_kernels.patch
against unpatched, and the 3-D attention core, cpp against the reference (CPU, fp32, eager).

See benchmarks/end_to_end_video.py. Under --benchmark-disable (make test) a tiny SwinTransformer3d, a small
SwinUNETR (32x32x64, the smallest volume its decoder's instance norms take) and a tiny attention core run each
contender once, inference and a training step; in both modes both contenders must agree and every Swin block of
the patched models must be patched. With benchmarks enabled (make bench) the measured shapes run: swin3d_t on a
16x112x112 clip, SwinUNETR (feature_size 24) at 64³ and 96³, the core at windows 8x7x7 and 7x7x7; each call's
peak memory is recorded in the benchmark's extra_info.
"""

from __future__ import annotations

import pytest
import torch

from .end_to_end_video import (
    CORE_CASES, PASSES, TINY_CORE, TINY_SWIN3D, TINY_UNETR, prepare_core, prepare_model, swin3d_t_case, unetr_case,
)
from .harness import RELATIVE_TOLERANCE
from .memory import peak_bytes

pytest.importorskip("torchvision", reason="torchvision is not installed")

# item -> (tiny case or None (not in quick mode), measured case, Swin blocks of the model; None for the core)
ITEMS = {
    "swin3d_t": (TINY_SWIN3D, swin3d_t_case(), (4, 12)),
    "swinunetr_64": (TINY_UNETR, unetr_case(64), (8, 8)),
    "swinunetr_96": (None, unetr_case(96), (8, 8)),
    "core_8x7x7": (TINY_CORE[0], CORE_CASES[0], None),
    "core_7x7x7": (None, CORE_CASES[1], None),
}
_PREPARED = {}


@pytest.fixture(autouse=True, scope="module")
def one_thread_in_quick_mode(request):
    """The quick mode's small shapes gain nothing from threads, and on a shared, busy CPU every op of several
    threads waits at OpenMP barriers. Measured runs keep the thread count benchmarks/conftest.py chose."""
    threads = torch.get_num_threads()
    if request.config.getoption("benchmark_disable", False):
        torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _prepared(tiny: bool, item: str, pass_name: str):
    key = (tiny, item, pass_name)
    if key not in _PREPARED:
        _PREPARED.clear()  # one pair of models alive at a time
        tiny_case, case, _ = ITEMS[item]
        chosen = tiny_case if tiny else case
        if item.startswith("core"):
            _PREPARED[key] = prepare_core(chosen, pass_name)
        else:
            if chosen.library == "monai":
                pytest.importorskip("monai", reason="monai is not installed")
                pytest.importorskip("einops", reason="einops is not installed")
            _PREPARED[key] = prepare_model(chosen, pass_name)
    return _PREPARED[key]


@pytest.mark.parametrize("contender", [0, 1], ids=["baseline", "fused"])
@pytest.mark.parametrize("pass_name", PASSES)
@pytest.mark.parametrize("item", ITEMS)
def test_video_3d(benchmark, item, pass_name, contender):
    tiny = benchmark.disabled
    if tiny and ITEMS[item][0] is None:
        pytest.skip("quick mode (--benchmark-disable) runs one small SwinUNETR and one small attention core")
    ready = _prepared(tiny, item, pass_name)
    assert ready.difference <= RELATIVE_TOLERANCE[torch.float32], f"fused differs by {ready.difference:.2e}"
    blocks = ITEMS[item][2]
    if blocks is not None:
        assert ready.blocks_patched == blocks[0 if tiny else 1]
    name = ready.contenders[contender]
    call = ready.calls[name]
    benchmark.group = f"end-to-end 3-D {ready.what} {pass_name}"
    benchmark.extra_info.update(contender=name)
    if benchmark.enabled:
        benchmark.extra_info["peak_bytes"] = peak_bytes(call, ready.args, torch.device("cpu"))
    benchmark.pedantic(call, args=ready.args, rounds=1 if tiny else 3, iterations=1)
