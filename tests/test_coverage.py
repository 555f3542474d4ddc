"""The coverage table (tools/coverage_table.py) rerun: every installed implementation, 2-D and 3-D, fully patched and
exact in fp64 on reference and cpp; and no window attention is ever left silently."""

import warnings

import torch
from torch import nn

import swin_kernels
from swin_kernels.patches import unpatched_lookalikes
from tools import coverage_table


def test_coverage_table(capsys):
    assert coverage_table.main([]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ") and "---" not in line]
    rows = {cells[0]: cells[1:] for cells in ([c.strip() for c in line.strip("|").split("|")] for line in lines[1:])}
    assert len(rows) == len(coverage_table.ROWS)
    for name, (count, errors, note) in rows.items():
        if "not installed" in note:
            continue
        assert count != "-", (name, note)
        patched, total = (int(v) for v in count.split(" / "))
        # HAT's overlapping cross-attention (OCAB) is neither a block nor named (not window attention)
        assert patched == total > 0, (name, count, note)
        assert all(float(e) <= 1e-10 for e in errors.split(", ")), (name, errors)


class _Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.qkv = nn.Linear(8, 24)
        self.relative_position_bias_table = nn.Parameter(torch.zeros(9, 2))


class _UnknownBlock(nn.Module):
    """A window-attention block of no library swin_kernels knows."""

    def __init__(self):
        super().__init__()
        self.window_size, self.shift_size = 2, 1
        self.msa = _Attention()

    def forward(self, x):
        return x


def test_unknown_window_attention_is_named_by_patch_and_explain():
    model = nn.Sequential(nn.Linear(8, 8), _UnknownBlock(), _UnknownBlock())
    assert unpatched_lookalikes(model) == [("1", "_UnknownBlock", coverage_table_reason()),
                                           ("2", "_UnknownBlock", coverage_table_reason())]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        swin_kernels.patch(model)
    assert any("2 _UnknownBlock block(s)" in str(w.message) for w in caught)
    assert "_UnknownBlock" in str(swin_kernels.explain(model, verbose=True))


def test_a_bare_table_is_named_too():
    """An attention module alone (its window on nothing): the module owning the table is named."""
    assert [p for p, _, _ in unpatched_lookalikes(nn.Sequential(_Attention()))] == ["0"]


class _Unknown3dBlock(_UnknownBlock):
    """3-D window attention of no library swin_kernels knows."""

    def __init__(self):
        super().__init__()
        self.window_size, self.shift_size = (2, 2, 2), (1, 1, 1)


def test_unknown_3d_window_attention_is_named_with_its_reason():
    from swin_kernels.patches import THREE_D

    model = nn.Sequential(_Unknown3dBlock())
    assert unpatched_lookalikes(model) == [("0", "_Unknown3dBlock", THREE_D)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        swin_kernels.patch(model)
    assert any("_Unknown3dBlock" in str(w.message) and THREE_D in str(w.message) for w in caught)
    assert THREE_D in str(swin_kernels.explain(model))


def coverage_table_reason():
    from swin_kernels.patches import UNKNOWN_CLASS

    return UNKNOWN_CLASS
