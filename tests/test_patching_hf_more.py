"""transformers' ClapAudioModel (CLAP's HTSAT audio encoder: ClapAudioLayer, the HF Swin V1 family) and
Swin2SRModel (Swin2SRLayer, the HF Swin V2 family) patched vs the library's own models.

Tiny random-weight configurations: CLAP's 8x8 then 4x4 maps under a window 3 (padded) and a window 4 (the second
stage clamped to one unshifted window); Swin2SR on a map other than its configured image size. fp64 outputs and
all gradients <= 1e-10 with every block patched and fused once per forward; fp32 within twice the library's own
fp32 error; triton under the interpreter on one tiny model of each.
"""

from __future__ import annotations

import pytest
import torch
from transformers import ClapAudioConfig, ClapAudioModel, Swin2SRConfig, Swin2SRModel

from swin_kernels.patches import family_of, hf_swin, hf_swinv2

from family_checks import check_fp32, check_fp64, randomize


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _clap(window: int, hidden: int = 24, heads=(2, 2)):
    config = ClapAudioConfig(spec_size=32, patch_size=4, patch_stride=(4, 4), num_mel_bins=16, window_size=window,
                             patch_embeds_hidden_size=hidden // 2, hidden_size=hidden, depths=[2, 2],
                             num_attention_heads=list(heads), enable_fusion=False)
    torch.manual_seed(0)
    return randomize(ClapAudioModel(config)), torch.randn(2, 1, 40, 16)


def _swin2sr(embed: int = 12, heads=(2, 2)):
    config = Swin2SRConfig(image_size=16, embed_dim=embed, depths=[2, 2], num_heads=list(heads), window_size=4,
                           upscale=1)
    torch.manual_seed(0)
    return randomize(Swin2SRModel(config)), torch.randn(1, 3, 16, 20)


MODELS = {"clap_padded": lambda: _clap(3), "clap_clamped": lambda: _clap(4), "swin2sr": _swin2sr}
FAMILY = {"clap_padded": hf_swin, "clap_clamped": hf_swin, "swin2sr": hf_swinv2}


def _blocks(model, family):
    return sum(family_of(m) is family for m in model.modules())


@pytest.mark.parametrize("backend", ["reference", "cpp"])
@pytest.mark.parametrize("case", list(MODELS))
def test_fp64(case, backend):
    model, x = MODELS[case]()
    blocks = _blocks(model, FAMILY[case])
    assert blocks == 4
    check_fp64(model, x, backend, blocks)


@pytest.mark.parametrize("case", list(MODELS))
def test_fp32_cpp(case):
    model, x = MODELS[case]()
    check_fp32(model, x, "cpp")


def test_clap_stage_two_is_clamped():
    model, _ = _clap(4)
    layer = model.audio_encoder.layers[1].blocks[1]
    layer.set_shift_and_window_size((4, 4))
    assert (layer.window_size, layer.shift_size) == (4, 0)


@pytest.mark.parametrize("case", ["clap", "swin2sr"])
def test_triton_interpreter(case):
    pytest.importorskip("triton", reason="triton is not installed")
    model, x = _clap(4, hidden=16, heads=(1, 1)) if case == "clap" else _swin2sr(embed=8, heads=(1, 1))
    if case == "clap":
        x = x[:1]
    check_fp64(model, x, "triton", 4)
