"""The tile table keyed by GPU family (swin_kernels/ops/triton/tile_table.py): look-up order, the family of a
device, and `tools.tune_configs --write` rewriting one family's section alone."""

from __future__ import annotations

import os

import pytest
import torch

pytest.importorskip("triton", reason="the tile table belongs to the triton backend")

from swin_kernels.ops.triton import configs, tile_table  # noqa: E402

A, B, C, D = (64, 64, 4, None), (32, 32, 4, 255), (16, 16, 8, None), (32, 16, 8, None)


def _tiles():
    return {"default": {("map", "bf16", 32, True): (A, A, A), ("large", "bf16", 32, True): (B, B, B)},
            "sm_80": {("map", "bf16", 32, True): (C, C, C)},
            "sm_90": {("large", "bf16", 32, True): (D, D, D)}}


def _rows(shapes):
    return [(s.rows, s.cols, s.warps, s.maxnreg) for s in shapes]


def test_lookup_order_family_then_default_kind_before_map():
    tiles = _tiles()
    cls = ("bf16", 32, True)
    assert _rows(configs.tile_shapes("default", "map", cls, tiles)) == [A] * 3
    assert _rows(configs.tile_shapes("sm_80", "map", cls, tiles)) == [C] * 3  # the family's own
    assert _rows(configs.tile_shapes("sm_90", "map", cls, tiles)) == [A] * 3  # none: the default's
    assert _rows(configs.tile_shapes("sm_90", "large", cls, tiles)) == [D] * 3
    # a kind's tiles (tuned on its windows) win over a family's map tiles (never checked on them)
    assert _rows(configs.tile_shapes("sm_80", "large", cls, tiles)) == [B] * 3
    assert _rows(configs.tile_shapes("sm_80", "volume", cls, tiles)) == [C] * 3
    assert _rows(configs.tile_shapes("sm_90", "map", ("fp16", 32, True), tiles)) == [A] * 3  # fp16 = bf16
    with pytest.raises(KeyError):
        configs.tile_shapes("default", "map", ("bf16", 64, True), tiles)


def test_plans_take_their_family_tiles(monkeypatch):
    monkeypatch.setattr(configs, "TILES", _tiles())
    plans = {f: configs.attention_plan(144, 32, torch.bfloat16, family=f) for f in configs.FAMILIES}
    assert plans["sm_80"].shapes[0].rows == 16 and plans["sm_80"].shapes[0].warps == 8
    assert plans["sm_90"].shapes[0].rows == 64 and plans["default"].shapes[0].rows == 64
    assert plans["sm_80"] != plans["default"]  # a family is part of the plan (and of its cache key)


def test_every_plan_class_has_tiles_on_every_family():
    for family in configs.FAMILIES:
        for dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
            for precision in configs.FP32_PRECISIONS:
                for tokens, head_dim, volume in ((49, 32, False), (144, 64, False), (576, 128, False),
                                                 (392, 32, True), (49, 128, False)):
                    plan = configs.attention_plan(tokens, head_dim, dtype, precision, volume, family)
                    if plan.supported:
                        assert len(plan.shapes) == 3


def test_device_family(monkeypatch):
    assert configs.device_family(torch.device("cpu")) == "default"
    monkeypatch.setattr(configs, "INTERPRET", False)
    for capability, family in (((8, 0), "sm_80"), ((9, 0), "sm_90"), ((8, 6), "default"), ((10, 0), "default")):
        configs._cuda_family.cache_clear()
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index, c=capability: c)
        assert configs.device_family(torch.device("cuda", 0)) == family
    configs._cuda_family.cache_clear()


def test_writing_one_family_leaves_the_others_as_they_are(monkeypatch):
    # importing the tool drops TRITON_INTERPRET (it compiles for real GPUs); the tests after this one still need it
    if "TRITON_INTERPRET" in os.environ:
        monkeypatch.setenv("TRITON_INTERPRET", os.environ["TRITON_INTERPRET"])
    from tools import tune_configs

    # the file is the tool's own rendering of its table (so a rewrite changes only what changed)
    assert tune_configs.TABLE.read_text() == tune_configs.render_table(tile_table.TILES)
    before = {f: dict(entries) for f, entries in tile_table.TILES.items()}
    key = ("map", "bf16", 32, True)  # a key sm_90's section does not hold yet
    found = {key: (C, C, C), ("volume", "bf16", 32, False): tuple(
        tuple(vars(s).values()) for s in configs.tile_shapes("sm_90", "volume", ("bf16", 32, False)))}
    after = tune_configs.updated_tiles(tile_table.TILES, "sm_90", found)
    assert after["sm_90"][key] == (C, C, C)
    assert ("volume", "bf16", 32, False) not in after["sm_90"]  # what sm_90 takes anyway: no entry
    for family in configs.FAMILIES:
        if family != "sm_90":
            assert after[family] == before[family]
    assert key not in before["sm_90"]
    assert {k: v for k, v in after["sm_90"].items() if k != key} == before["sm_90"]
    namespace = {}
    exec(tune_configs.render_table(after), namespace)
    assert namespace["TILES"] == after
