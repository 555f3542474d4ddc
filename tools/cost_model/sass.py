"""SASS listings: instructions with their source lines, loops found by backward branches, dynamic counts.

``parse`` reads `nvdisasm -gi` output (or plain `cuobjdump -sass`): one Instruction per line with its address,
opcode and the outermost source line it was inlined into. A loop is a backward branch: the instructions from the
branch target up to the branch repeat, and loops nest by containment. ``count`` multiplies each instruction by the
trip counts of the loops around it (instructions behind forward branches are counted as executed: an upper bound).
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from collections import Counter
from dataclasses import dataclass, field

_INSTRUCTION = re.compile(r"/\*([0-9a-f]{4,})\*/\s+(?:\{\s*)?(@!?U?P[T\d]+\s+)?([A-Z][A-Z0-9_.]*)([^;]*);")
_LABEL = re.compile(r"^\s*(\.L_x_\d+):")
_LINE = re.compile(r'//## File "([^"]+)", line (\d+)(?: inlined at "([^"]+)", line (\d+))?')
_TARGET = re.compile(r"`?\(?(\.L_x_\d+)\)?`?|0x([0-9a-f]+)")
# tensor-core instructions by family: HMMA (mma.sync), HGMMA (wgmma, sm_90), and the integer / fp64 ones
TENSOR_CORE = ("HGMMA", "HMMA", "IMMA", "DMMA", "IGMMA", "QGMMA", "BGMMA")


@dataclass
class Instruction:
    address: int
    opcode: str  # e.g. "HMMA.16816.F32.BF16"
    operands: str
    predicated: bool
    file: str | None = None  # source file and line of the outermost function it was inlined into
    line: int | None = None

    @property
    def base(self) -> str:
        return self.opcode.split(".")[0]


@dataclass
class Loop:
    start: int  # index of the first instruction (the branch target)
    end: int  # index of the backward branch
    children: list = field(default_factory=list)
    trips: int = 1

    def contains(self, other: "Loop") -> bool:
        return self.start <= other.start and other.end <= self.end and (self.start, self.end) != (other.start,
                                                                                                   other.end)


def parse(text: str) -> list[Instruction]:
    """Instructions of the first kernel in ``text``, in address order, trailing padding (NOP, the final
    self-branch) dropped."""
    instructions: list[Instruction] = []
    labels: dict[str, int] = {}
    file = line = None
    chain: list[tuple] = []
    for raw in text.splitlines():
        if m := _LINE.search(raw):
            chain.append(m.groups())
            continue
        if m := _LABEL.match(raw):
            labels[m.group(1)] = len(instructions)
            continue
        m = _INSTRUCTION.search(raw)
        if not m:
            continue
        if chain:
            # the outermost frame: the last "inlined at" of the chain, or the plain location
            outer = chain[-1]
            file, line = (outer[2], int(outer[3])) if outer[2] else (outer[0], int(outer[1]))
            chain = []
        instructions.append(Instruction(int(m.group(1), 16), m.group(3), m.group(4).strip(), bool(m.group(2)),
                                        file, line))
    _resolve_targets(instructions, labels)
    while instructions and (instructions[-1].base == "NOP" or _is_self_branch(instructions, len(instructions) - 1)):
        instructions.pop()
    return instructions


def _resolve_targets(instructions: list[Instruction], labels: dict[str, int]) -> None:
    by_address = {ins.address: i for i, ins in enumerate(instructions)}
    for ins in instructions:
        ins.target = None
        if ins.base not in ("BRA", "BRX", "JMP", "CALL"):
            continue
        m = _TARGET.search(ins.operands)
        if m and m.group(1):
            ins.target = labels.get(m.group(1))
        elif m and m.group(2):
            ins.target = by_address.get(int(m.group(2), 16))


def _is_self_branch(instructions: list[Instruction], i: int) -> bool:
    return instructions[i].base == "BRA" and getattr(instructions[i], "target", None) == i


def find_loops(instructions: list[Instruction]) -> list[Loop]:
    """Top-level loops (children nested inside), one per backward-branch target (the farthest branch to it)."""
    ends: dict[int, int] = {}
    for i, ins in enumerate(instructions):
        target = getattr(ins, "target", None)
        if target is not None and target < i:
            ends[target] = max(ends.get(target, i), i)
    loops = sorted((Loop(s, e) for s, e in ends.items()), key=lambda l: (l.start, -l.end))
    roots: list[Loop] = []
    stack: list[Loop] = []
    for loop in loops:
        while stack and not (stack[-1].start <= loop.start and loop.end <= stack[-1].end):
            stack.pop()
        (stack[-1].children if stack else roots).append(loop)
        stack.append(loop)
    return roots


def walk(loops: list[Loop]):
    for loop in loops:
        yield loop
        yield from walk(loop.children)


def multipliers(instructions: list[Instruction], loops: list[Loop]) -> list[int]:
    """How many times each instruction runs per program, given each loop's ``trips``."""
    mult = [1] * len(instructions)

    def apply(loop: Loop, factor: int) -> None:
        factor *= loop.trips
        for i in range(loop.start, loop.end + 1):
            mult[i] = factor
        for child in loop.children:
            apply(child, factor)

    for loop in loops:
        apply(loop, 1)
    return mult


@dataclass
class Counts:
    static: int  # instructions in the listing
    dynamic: int  # per warp per program, loops x trip counts
    tensor_core: dict  # family -> dynamic count
    loops: int


def count(instructions: list[Instruction], loops: list[Loop]) -> Counts:
    mult = multipliers(instructions, loops)
    cores: Counter = Counter()
    for ins, m in zip(instructions, mult):
        if ins.base in TENSOR_CORE:
            cores[ins.base] += m
    return Counts(len(instructions), sum(mult), dict(cores), sum(1 for _ in walk(loops)))


def disassemble(cubin: bytes, tool=None) -> tuple[str, int, int]:
    """(nvdisasm -gi listing, registers, spill bytes) of a cubin's kernel."""
    from .triton_build import triton_tool

    tool = tool or triton_tool
    with tempfile.NamedTemporaryFile(suffix=".cubin", delete=False) as f:
        f.write(cubin)
    try:
        text = subprocess.run([tool("nvdisasm"), "-gi", "-c", f.name], capture_output=True, text=True,
                              check=True).stdout
        usage = subprocess.run([tool("cuobjdump"), "-res-usage", f.name], capture_output=True, text=True,
                               check=True).stdout
    finally:
        os.unlink(f.name)
    registers = re.search(r"REG:(\d+)", usage)
    local = re.search(r"LOCAL:(\d+)", usage)
    return text, int(registers.group(1)) if registers else -1, int(local.group(1)) if local else 0
