"""The static GPU cost model (tools/cost_model): SASS loops, calibration, budgets, the host-bound stages.

Fast: no compilation here (`make cost-model` compiles and checks every kernel's budget)."""

import json
from pathlib import Path

import pytest

from tools.cost_model import budgets, hardware, model, report, sass

LISTING = """
        /*0000*/                   S2R R0, SR_CTAID.X ;
.L_x_0:
	//## File "/k/attention.py", line 10
        /*0010*/                   IADD3 R1, R1, 0x1, RZ ;
.L_x_1:
	//## File "/k/tiles.py", line 5 inlined at "/k/attention.py", line 12
        /*0020*/                   HMMA.16816.F32.BF16 R4, R8, R12, R4 ;
        /*0030*/               @P0 BRA `(.L_x_1) ;
        /*0040*/                   ISETP.GE.AND P1, PT, R1, 0x4, PT ;
        /*0050*/              @!P1 BRA `(.L_x_0) ;
        /*0060*/               @P2 BRA `(.L_x_2) ;
        /*0070*/                   STG.E [R2], R4 ;
.L_x_2:
        /*0080*/                   EXIT ;
.L_x_3:
        /*0090*/                   BRA `(.L_x_3);
        /*00a0*/                   NOP;
"""


def test_sass_loops_nest_and_multiply_by_trip_counts():
    instructions = sass.parse(LISTING)
    assert [i.base for i in instructions] == ["S2R", "IADD3", "HMMA", "BRA", "ISETP", "BRA", "BRA", "STG", "EXIT"]
    assert (instructions[2].file, instructions[2].line) == ("/k/attention.py", 12)  # the outermost frame
    loops = sass.find_loops(instructions)
    assert [(l.start, l.end) for l in loops] == [(1, 5)]  # the forward branch at 0x60 is no loop
    assert [(c.start, c.end) for c in loops[0].children] == [(2, 3)]
    loops[0].trips, loops[0].children[0].trips = 4, 3
    counts = sass.count(instructions, loops)
    # 4 outside loops + outer body (IADD3, ISETP, BRA: 3 x 4) + inner (HMMA, BRA: 2 x 12)
    assert counts.static == 9 and counts.dynamic == 4 + 12 + 24
    assert counts.tensor_core == {"HMMA": 12} and counts.loops == 2


def test_occupancy_limits_of_sm_90():
    assert hardware.ctas_per_sm(95, 20480, 4) == 5  # registers: 65536 / (96 x 128)
    assert hardware.ctas_per_sm(32, 100 * 1024, 4) == 2  # shared memory
    assert hardware.ctas_per_sm(16, 0, 1) == 32  # blocks


def test_calibration_predicts_the_h200_measurements_within_25_percent():
    cal = model.calibration()
    k = cal["kernels"]
    forward = model.call_time(k["forward"], hardware.H200, cal["efficiency"])
    both = model.call_time(k["forward"] + k["backward"], hardware.H200, cal["efficiency"])
    assert forward == pytest.approx(0.228e-3, rel=0.25)
    assert both == pytest.approx(1.240e-3, rel=0.25)


def test_stages_3_and_4_are_singled_out_as_host_bound():
    cal = model.calibration()
    flagged = set()
    for name, parts in cal["stages"].items():
        device = model.call_time(parts["forward"], hardware.H200, cal["efficiency"])
        if report.host_bound(device, cal["host_forward_s"]):
            flagged.add(name.split()[1])
    assert flagged == {"s3", "s4"}


def test_budget_check_fails_on_an_inflated_count(tmp_path):
    result = [{"workload": "w", "parts": {"forward": {"kernels": [
        {"kernel": "k", "specialisation": "A=1", "instructions": 100, "registers": 40}]}}}]
    path = tmp_path / "budgets.json"
    budgets.write(path, result, 90)
    assert budgets.check(path, result, 90) == []
    result[0]["parts"]["forward"]["kernels"][0]["instructions"] = 101
    failures = budgets.check(path, result, 90)
    assert len(failures) == 1 and "k [A=1] sm_90 @ w: 101 instructions, budget 100" in failures[0]
    assert "no budget" in budgets.check(tmp_path / "none.json", result, 90)[0]


def test_recorded_budgets_cover_the_headline_kernels():
    data = json.loads((Path(budgets.__file__).parent / "budgets.json").read_text())
    assert any(key.startswith("window_attention_fwd_kernel") and "swin-t s1 shift bf16" in key for key in data)



def test_loops_map_to_source_ranges_and_their_trip_counts():
    triton = pytest.importorskip("triton")
    import triton.language as tl

    from tools.cost_model import trips

    @triton.jit
    def kernel(x_ptr, per_slot, total, STEPS: tl.constexpr, ONE: tl.constexpr):
        first = tl.program_id(0) * per_slot
        last = tl.minimum(first + per_slot, total)
        for w in range(first, last):
            for s in range(STEPS):
                tl.store(x_ptr + w * STEPS + s, s)
        for k in range(ONE):  # one iteration of constant bounds: compiled to straight code
            tl.store(x_ptr, k)

    lines, first_line = __import__("inspect").getsourcelines(kernel.fn)
    at = {text.strip().split(":")[0]: first_line + i for i, text in enumerate(lines)}
    here = __file__
    store = at["tl.store(x_ptr + w * STEPS + s, s)"]
    outer_for = at["for w in range(first, last)"]
    instructions = [sass.Instruction(i * 16, op, "", False, here, line) for i, (op, line) in enumerate(
        [("S2R", first_line + 1), ("IADD3", outer_for), ("STG", store), ("BRA", store), ("BRA", outer_for),
         ("STG", at["tl.store(x_ptr, k)"]), ("EXIT", None)])]
    instructions[3].target, instructions[4].target = 2, 1
    for ins in instructions:
        ins.target = getattr(ins, "target", None)
    loops = sass.find_loops(instructions)
    notes = trips.assign_trips(loops, instructions, kernel, {"per_slot": 5, "total": 12, "STEPS": 3, "ONE": 1})
    assert (loops[0].trips, loops[0].children[0].trips) == (5, 3)
    assert sass.count(instructions, loops).dynamic == 3 + 2 * 5 + 2 * 15
    assert notes[0].endswith("range(first, last) = 5")


# Recording launches swaps the kernels for recorders: a process where TRITON_INTERPRET was never set (the conftest
# sets it for this one).
RECORD_FP32 = r"""
import json
from tools.cost_model import launches, workloads
out = {}
for w in workloads.all_workloads():
    if w.dtype.is_floating_point and w.element_bytes == 4:
        calls = launches.record_call(w)
        out[w.name] = sorted({l.constexprs["INPUT_PRECISION"] for part in calls.values() for l in part
                              if l.kernel.startswith("window_attention")})
print(json.dumps(out))
"""


def test_fp32_workloads_launch_their_dot_precision():
    """fp32 stage 1 is modelled at the default 3xTF32, at TF32 (torch's switch) and at IEEE (on request)."""
    import os
    import subprocess
    import sys

    pytest.importorskip("triton")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    result = subprocess.run([sys.executable, "-c", RECORD_FP32], capture_output=True, text=True, env=env,
                            timeout=300, cwd=Path(__file__).resolve().parents[1])
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {
        "swin-t s1 noshift fp32": ["tf32x3"], "swin-t s1 shift fp32": ["tf32x3"],
        "swin-t s1 shift fp32 tf32": ["tf32"], "swin-t s1 shift fp32 ieee": ["ieee"]}
