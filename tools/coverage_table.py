"""Which Swin implementations swin_kernels.patch covers, measured: python -m tools.coverage_table

For each implementation of the Swin window attention that people run (issue 17's table), installed here: build a
tiny random-weight model with the library's own code, patch a copy, and print the blocks patched out of the blocks
that look like window attention, and the fp64 max error of the patched forward against the unpatched one on each
backend that runs here (reference, cpp; triton with --triton, slow under the interpreter). A row whose library is
not installed says so; a row whose blocks are left alone gives the reason. The 3-D rows (torchvision's Swin3D,
MONAI's SwinUNETR with spatial_dims=3, mmaction2's Video Swin) run volumes that pad and clamp on some axis.
Libraries are imported lazily, one row at a time.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import os
import sys
import types
import warnings

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _randomize(model):
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.2)
    return model


# ------------------------------------------------------------------------------------- model builders
def _hf(kind):
    import transformers as t

    if kind == "swin":
        return t.SwinModel(t.SwinConfig(image_size=56, embed_dim=16, depths=[2, 2], num_heads=[2, 2],
                                        window_size=4)), torch.randn(1, 3, 56, 48)
    if kind == "swinv2":
        return t.Swinv2Model(t.Swinv2Config(image_size=56, embed_dim=16, depths=[2, 2], num_heads=[2, 2],
                                            window_size=4)), torch.randn(1, 3, 56, 48)
    if kind == "donut":
        return t.DonutSwinModel(t.DonutSwinConfig(image_size=56, embed_dim=16, depths=[2, 2], num_heads=[2, 2],
                                                  window_size=4)), torch.randn(1, 3, 56, 48)
    if kind == "maskformer":
        from transformers.models.maskformer.modeling_maskformer_swin import MaskFormerSwinModel

        return MaskFormerSwinModel(t.MaskFormerSwinConfig(image_size=56, embed_dim=16, depths=[2, 2],
                                                          num_heads=[2, 2], window_size=4)), torch.randn(1, 3, 56, 48)
    if kind == "clap":
        config = t.ClapAudioConfig(spec_size=32, patch_size=4, patch_stride=(4, 4), num_mel_bins=16, window_size=3,
                                   patch_embeds_hidden_size=12, hidden_size=24, depths=[2, 2],
                                   num_attention_heads=[2, 2], enable_fusion=False)
        return t.ClapAudioModel(config), torch.randn(1, 1, 40, 16)
    return t.Swin2SRModel(t.Swin2SRConfig(image_size=16, embed_dim=12, depths=[2, 2], num_heads=[2, 2],
                                          window_size=4, upscale=1)), torch.randn(1, 3, 16, 20)


def _timm(name, **kwargs):
    import timm

    size = kwargs.pop("size", (56, 48))
    model = timm.create_model(name, pretrained=False, img_size=size, embed_dim=16, depths=(2, 2), num_heads=(2, 2),
                              num_classes=0, **kwargs)
    return model, torch.randn(1, 3, *size)


def _torchvision(name):
    import torchvision

    builder = getattr(torchvision.models, name, None) or getattr(torchvision.models.video, name)
    if name == "swin3d_t":
        return builder(num_classes=4), torch.randn(1, 3, 4, 32, 32)
    from torchvision.models.swin_transformer import SwinTransformer, SwinTransformerBlockV2, PatchMergingV2

    if name == "swin_v2_t":
        return SwinTransformer(patch_size=[4, 4], embed_dim=16, depths=[2, 2], num_heads=[2, 2], window_size=[4, 4],
                               block=SwinTransformerBlockV2, downsample_layer=PatchMergingV2,
                               num_classes=4), torch.randn(1, 3, 56, 48)
    return SwinTransformer(patch_size=[4, 4], embed_dim=16, depths=[2, 2], num_heads=[2, 2], window_size=[4, 4],
                           num_classes=4), torch.randn(1, 3, 56, 48)


def _mm(kind):
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    from mmcv_ext_standin import install_all

    install_all()
    if kind in ("mmpretrain_v1", "mmpretrain_v2"):
        from mmpretrain.models.backbones import SwinTransformer, SwinTransformerV2

        arch = dict(embed_dims=16, depths=[2, 2], num_heads=[2, 2])
        if kind == "mmpretrain_v1":
            return SwinTransformer(arch=arch, img_size=56, window_size=3, out_indices=(1,)), torch.randn(1, 3, 52, 44)
        return SwinTransformerV2(arch=dict(arch, extra_norm_every_n_blocks=0), img_size=56, window_size=4,
                                 out_indices=(1,)), torch.randn(1, 3, 52, 44)
    if kind == "mmdet":
        from mmdet.models.backbones import SwinTransformer
    else:
        from mmseg.models.backbones import SwinTransformer
    return SwinTransformer(embed_dims=16, depths=[2, 2], num_heads=[2, 2], window_size=4, strides=(4, 2),
                           out_indices=(1,)), torch.randn(1, 3, 44, 52)


def mmaction_swin_module():
    """mmaction2's Video Swin backbone module, ``mmaction.models.backbones.swin``, as installed.

    ``import mmaction.models`` fails with mmaction2 1.2.0 (its wheel lacks ``mmaction/models/localizers/drn``, and
    its multimodal models need transformers 4), so unless it imported already, ``mmaction.models`` and
    ``mmaction.models.backbones`` are entered as bare packages over their installed directories: the backbone module
    then imports on its own (it needs ``mmaction.registry``, mmengine and mmcv's pure-Python bricks). Its code is
    the library's, unchanged."""
    if "mmaction.models.backbones.swin" not in sys.modules and "mmaction.models" not in sys.modules:
        root = os.path.dirname(importlib.util.find_spec("mmaction").origin)
        for name in ("mmaction.models", "mmaction.models.backbones"):
            package = types.ModuleType(name)
            package.__path__ = [os.path.join(root, *name.split(".")[1:])]
            package.__package__ = name
            sys.modules[name] = package
    import mmaction.models.backbones.swin as swin

    return swin


def _mmaction():
    swin = mmaction_swin_module()
    model = swin.SwinTransformer3D(arch=dict(embed_dims=16, depths=[2, 2], num_heads=[2, 2]), patch_size=(2, 4, 4),
                                   window_size=(4, 3, 3), drop_path_rate=0.0, out_indices=(0, 1))
    return model, torch.randn(1, 3, 6, 40, 36)


def _monai(dims):
    from monai.networks.nets import SwinUNETR

    model = SwinUNETR(in_channels=1, out_channels=2, feature_size=12, spatial_dims=dims, depths=(2, 2, 2, 2),
                      num_heads=(1, 1, 2, 2)).swinViT
    return model, torch.randn(1, 1, 64, 64) if dims == 2 else torch.randn(1, 1, 32, 32, 32)


def _spandrel(kind):
    if kind == "swinir":
        from spandrel.architectures.SwinIR.__arch.SwinIR import SwinIR

        return SwinIR(img_size=16, embed_dim=12, depths=[2, 2], num_heads=[2, 2], window_size=4, upscale=2,
                      upsampler="pixelshuffledirect"), torch.randn(1, 3, 16, 20)
    if kind == "swin2sr":
        from spandrel.architectures.Swin2SR.__arch.Swin2SR import Swin2SR

        return Swin2SR(img_size=16, embed_dim=12, depths=[2, 2], num_heads=[2, 2], window_size=4, upscale=1,
                       upsampler=""), torch.randn(1, 3, 16, 20)
    from spandrel.architectures.HAT.__arch.HAT import HAT

    return HAT(img_size=16, embed_dim=30, squeeze_factor=3, depths=[2], num_heads=[2], window_size=4,
               upscale=1, upsampler=""), torch.randn(1, 3, 16, 16)


def _htsat():
    """Two HTSAT stages (the official classification blocks, forward(x)) of laion_clap's own code, imported without
    its audio front end (tests/htsat_standin.py); the model reads a stage's tokens, not its attention output."""
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    from htsat_standin import import_htsat

    htsat = import_htsat()

    class Stages(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.stage1 = htsat.BasicLayer(dim=12, input_resolution=(8, 8), depth=2, num_heads=2, window_size=4,
                                           downsample=htsat.PatchMerging)
            self.stage2 = htsat.BasicLayer(dim=24, input_resolution=(4, 4), depth=2, num_heads=2, window_size=4)

        def forward(self, x):
            return self.stage2(self.stage1(x)[0])[0]

    return Stages(), torch.randn(1, 64, 12)


def _groundingdino():
    """GroundingDINO's copy of the official detection Swin (forward(x, mask_matrix)), its backbone module loaded
    from its file (the package's __init__ imports the whole detector and a compiled extension)."""
    from tools.groundingdino_backbone import backbone_module

    backbone = backbone_module().SwinTransformer(embed_dim=12, depths=[2, 2], num_heads=[2, 2], window_size=4,
                                                 drop_path_rate=0.0, out_indices=(0, 1))

    class Raw(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.swin = backbone

        def forward(self, x):
            return self.swin.forward_raw(x)

    return Raw(), torch.randn(1, 3, 44, 52)


# (row, library to import first, builder)
ROWS = [
    ("HF transformers SwinLayer", "transformers", lambda: _hf("swin")),
    ("HF transformers Swinv2Layer", "transformers", lambda: _hf("swinv2")),
    ("HF transformers DonutSwinLayer", "transformers", lambda: _hf("donut")),
    ("HF transformers MaskFormerSwinLayer", "transformers", lambda: _hf("maskformer")),
    ("HF transformers ClapAudioLayer (CLAP/HTSAT)", "transformers", lambda: _hf("clap")),
    ("HF transformers Swin2SRLayer", "transformers", lambda: _hf("swin2sr")),
    ("timm SwinTransformerBlock", "timm", lambda: _timm("swin_tiny_patch4_window7_224", window_size=4)),
    ("timm SwinTransformerV2Block", "timm", lambda: _timm("swinv2_tiny_window8_256", window_size=4)),
    ("timm SwinTransformerV2CrBlock", "timm", lambda: _timm("swinv2_cr_tiny_ns_224", window_size=4,
                                                            size=(64, 64))),
    ("torchvision ShiftedWindowAttention", "torchvision", lambda: _torchvision("swin_t")),
    ("torchvision ShiftedWindowAttentionV2", "torchvision", lambda: _torchvision("swin_v2_t")),
    ("torchvision ShiftedWindowAttention3d (3-D)", "torchvision", lambda: _torchvision("swin3d_t")),
    ("mmpretrain ShiftWindowMSA V1", "mmpretrain", lambda: _mm("mmpretrain_v1")),
    ("mmpretrain ShiftWindowMSA V2", "mmpretrain", lambda: _mm("mmpretrain_v2")),
    ("mmdet ShiftWindowMSA", "mmdet", lambda: _mm("mmdet")),
    ("mmseg ShiftWindowMSA", "mmseg", lambda: _mm("mmseg")),
    ("MONAI SwinUNETR 2-D", "monai", lambda: _monai(2)),
    ("MONAI SwinUNETR 3-D", "monai", lambda: _monai(3)),
    ("mmaction2 SwinTransformerBlock3D (Video Swin, 3-D)", "mmaction", _mmaction),
    ("spandrel SwinIR", "spandrel", lambda: _spandrel("swinir")),
    ("spandrel Swin2SR", "spandrel", lambda: _spandrel("swin2sr")),
    ("spandrel HAT (HAB)", "spandrel", lambda: _spandrel("hat")),
    ("laion_clap HTSAT SwinTransformerBlock", "laion_clap", _htsat),
    ("GroundingDINO SwinTransformerBlock (the official detection code's copy)", "groundingdino", _groundingdino),
]


def _flat(out):
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, (tuple, list)):
        return [t for o in out for t in _flat(o)]
    if isinstance(out, dict) or hasattr(out, "values"):
        return [t for o in out.values() for t in _flat(o)]
    return []


def measure(row, library, build, backends):
    """One row: (row, library, patched, total, {backend: fp64 max error}, note)."""
    import importlib.util

    import swin_kernels
    from swin_kernels.patches import family_of, is_patched, unpatched_lookalikes

    if importlib.util.find_spec(library) is None:
        return row, library, None, None, {}, f"{library} is not installed"
    if build is None:
        return row, library, None, None, {}, f"no tiny-model builder for {library} yet"
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model, x = build()
        model = _randomize(model.double())
        model.eval()
        x = x.double()
        with torch.no_grad():
            expected = _flat(model(x))
        errors, note, patched, total = {}, "", 0, 0
        for backend in backends:
            copy_ = swin_kernels.patch(copy.deepcopy(model), backend=backend)
            copy_.eval()
            patched = sum(is_patched(m) for m in copy_.modules())
            known = [m for m in copy_.modules() if family_of(m) is not None]
            lookalikes = unpatched_lookalikes(copy_)
            total = len(known) + len(lookalikes)
            reasons = {family_of(m).unsupported_reason(m) for m in known if not is_patched(m)}
            reasons |= {reason for _, _, reason in lookalikes}
            note = "; ".join(sorted(r for r in reasons if r))
            if patched == 0:
                break
            with torch.no_grad():
                got = _flat(copy_(x))
            errors[backend] = max((a - b).abs().max().item() for a, b in zip(got, expected))
    return row, library, patched, total, errors, note


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--triton", action="store_true", help="also the triton backend (slow on the CPU)")
    parser.add_argument("--rows", default="", help="comma-separated substrings: only matching rows")
    args = parser.parse_args(argv)
    from tools.torchvision_compat import make_torchvision_importable

    make_torchvision_importable()
    backends = ["reference", "cpp"] + (["triton"] if args.triton else [])
    wanted = [w.strip().lower() for w in args.rows.split(",") if w.strip()]
    print(f"| implementation | blocks patched / total | fp64 max error ({', '.join(backends)}) | note |")
    print("|---|---|---|---|")
    for row, library, build in ROWS:
        if wanted and not any(w in row.lower() for w in wanted):
            continue
        try:
            row, library, patched, total, errors, note = measure(row, library, build, backends)
        except Exception as error:  # a library that imports but fails to build: say so, go on
            patched = total = None
            errors, note = {}, f"could not build: {type(error).__name__}: {str(error)[:120]}"
        count = "-" if patched is None else f"{patched} / {total}"
        errs = ", ".join(f"{errors[b]:.1e}" for b in backends if b in errors) or "-"
        print(f"| {row} | {count} | {errs} | {note} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
