"""The CUDA kernels (csrc/cuda/*.cu) in the cost model: compiled by nvcc to a cubin (sm_90, with line info), each
kernel's registers, shared memory and SASS, and per workload the dynamic instruction count of every launch of a
cuda-backend call, modelled like the Triton kernels' (model.py) for the cuda-vs-triton table.

Trip counts. A SASS loop is a backward branch (sass.find_loops); it is mapped to the C++ `for` whose body holds the
branch (the innermost source frame of the branch instruction; inlined helpers included). Each such `for` that stays
a loop in the compiled code carries its trip count for thread 0 of block 0 as a comment on its line or on a comment
line just above it:

    for (int64_t bw = first; bw < last; ++bw) {  // trips: args.windows_per_chunk
    // trips: cdiv(chunks, kReduceGroups), unrolled 4
    for (int64_t chunk = group; chunk < chunks; chunk += kReduceGroups) ...

The expression is C++ arithmetic (or Python's ``x if c else y``) over the launch's values (kernel parameters such
as ``args`` with the fields of the C++ struct, template parameters such as ``D``; an element type stands for its
size, so ``sizeof(T)`` is it), the sources' ``constexpr int`` constants, ``cdiv`` and, inside an inlined helper,
the helper's parameters and template parameters, bound from its call site's arguments.
``unrolled U`` says the compiler unrolls it U times: one loop of cdiv(trips, U) iterations (the remainder
predicated), or, where it compiles to several loops, the largest runs trips // U times and the others (the
remainder) trips % U; ``versioned``: of several compiled copies the largest runs. A SASS loop mapped to a `for`
without a count fails the model; fully unrolled loops need none.

Counted as in the Triton model: every instruction of a loop body runs trip-count times and code behind forward
branches counts as executed (an upper bound). Code after the kernel's last EXIT is out of line: a subroutine
(a CALL target, up to its RET) counts once per CALL, the rest (the cold paths of divergent warp shuffles) not at all.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import subprocess
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

from . import hardware, model, sass, traffic
from .launches import ROOT
from .triton_build import CACHE, triton_tool

_FORMAT = 2  # bump when the cached records change shape


# ----------------------------------------------------------------------------------------------- compiling
def _digest(csrc: Path) -> str:
    h = hashlib.sha256(str(_FORMAT).encode())
    for path in sorted(csrc.rglob("*")):
        if path.suffix in (".cu", ".cuh", ".h"):
            h.update(path.name.encode() + path.read_bytes())
    return h.hexdigest()[:32]


def compile_listings(arch: int = 90, source_root: Path = ROOT) -> list[dict]:
    """[{file, kernel (mangled), listing (nvdisasm -gi), registers, shared_static}] of every kernel; [] without nvcc."""
    from tools import cuda_check

    nvcc = cuda_check.find_nvcc()
    if nvcc is None:
        return []
    csrc = Path(source_root) / "csrc"
    cached = CACHE / f"cuda-listings-sm{arch}-{_digest(csrc)}.json"
    if cached.exists():
        return json.loads(cached.read_text())
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for source in sorted((csrc / "cuda").glob("*.cu")):
            cubin = Path(tmp) / f"{source.stem}.cubin"
            subprocess.run([nvcc, "-std=c++20", "-O3", "-lineinfo", "-cubin", f"-arch=sm_{arch}", "-I", str(csrc),
                            *(f"-I{d}" for d in cuda_check.torch_include_dirs()), str(source), "-o", str(cubin)],
                           check=True, capture_output=True, text=True)
            usage = subprocess.run([triton_tool("cuobjdump"), "-res-usage", str(cubin)], capture_output=True,
                                   text=True, check=True).stdout
            resources = {name: (int(reg), int(shared)) for name, reg, shared in
                         re.findall(r"Function (\S+):\s*\n\s*REG:(\d+) STACK:\d+ SHARED:(\d+)", usage)}
            listing = subprocess.run([triton_tool("nvdisasm"), "-gi", "-c", str(cubin)], capture_output=True,
                                     text=True, check=True).stdout
            for name, body in _functions(listing):
                if name not in resources:
                    continue  # a device function of its own, not a kernel
                registers, shared = resources[name]
                out.append({"file": source.name, "kernel": name, "listing": body, "registers": registers,
                            "shared_static": shared})
    CACHE.mkdir(parents=True, exist_ok=True)
    cached.write_text(json.dumps(out))
    return out


def _functions(listing: str) -> list[tuple[str, str]]:
    parts = re.split(r"^\.text\.(\S+):\s*$", listing, flags=re.M)
    return [(parts[i], parts[i + 1]) for i in range(1, len(parts) - 1, 2)]


def readable(mangled: str) -> str:
    from tools import cuda_check

    return cuda_check.readable_name(mangled)


# ---------------------------------------------------------------------------------------- the C++ sources
@dataclass
class Function:
    name: str
    line: int  # of the opening brace
    end: int
    params: list[str]
    template_params: list[str]


@dataclass
class SourceLoop:
    file: str
    line: int  # the `for`
    end: int  # last line of its body
    trips: str | None  # the annotated expression
    unrolled: int = 1  # 0: versioned (the compiler keeps several copies, one of which runs)
    function: Function | None = None


@dataclass
class SourceFile:
    name: str
    lines: list[str]  # as written
    code: str  # comments and strings blanked, newlines kept
    loops: list[SourceLoop] = field(default_factory=list)
    functions: list[Function] = field(default_factory=list)

    def line_of(self, offset: int) -> int:
        return self.code.count("\n", 0, offset) + 1

    def offset_of(self, line: int) -> int:
        offset = 0
        for _ in range(line - 1):
            offset = self.code.index("\n", offset) + 1
        return offset


def _blank(text: str) -> str:
    """Comments and string / char literals replaced by spaces (newlines kept), so braces and parens can be counted."""
    out = []
    i, n = 0, len(text)
    while i < n:
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2) + 2
        elif text[i] in "\"'":
            j = i + 1
            while j < n and text[j] != text[i]:
                j += 2 if text[j] == "\\" else 1
            j += 1
        else:
            out.append(text[i])
            i += 1
            continue
        out.append("".join(c if c == "\n" else " " for c in text[i:j]))
        i = j
    return "".join(out)


def _match(code: str, start: int, open_: str, close: str) -> int:
    """Index of the bracket closing the one at ``start``."""
    depth = 0
    for i in range(start, len(code)):
        if code[i] == open_:
            depth += 1
        elif code[i] == close:
            depth -= 1
            if depth == 0:
                return i
    raise ValueError(f"unbalanced {open_}{close}")


def _statement_end(code: str, i: int) -> int:
    """End index of the statement starting at or after ``i`` (a block, a for/if/while, or up to its ';')."""
    while code[i].isspace():
        i += 1
    if code.startswith("#pragma", i):  # a pragma line before a nested statement
        return _statement_end(code, code.index("\n", i))
    if code[i] == "{":
        return _match(code, i, "{", "}")
    m = re.match(r"(for|while|if)\s*\(", code[i:])
    if m:
        close = _match(code, i + m.end() - 1, "(", ")")
        end = _statement_end(code, close + 1)
        rest = re.match(r"\s*else\b", code[end + 1:])
        return _statement_end(code, end + 1 + rest.end()) if m.group(1) == "if" and rest else end
    depth = 0
    while True:
        if code[i] in "([{":
            depth += 1
        elif code[i] in ")]}":
            depth -= 1
        elif code[i] == ";" and depth == 0:
            return i
        i += 1


def _split_top(text: str) -> list[str]:
    """Comma-separated items at nesting depth 0 (parens, brackets, angle brackets of templates)."""
    items, depth, current = [], 0, ""
    for c in text:
        if c in "([<{":
            depth += 1
        elif c in ")]>}":
            depth -= 1
        if c == "," and depth == 0:
            items.append(current.strip())
            current = ""
        else:
            current += c
    if current.strip():
        items.append(current.strip())
    return items


def _param_name(declaration: str) -> str:
    names = re.findall(r"[A-Za-z_]\w*", declaration.split("=")[0])
    return names[-1] if names else ""


_TRIPS = re.compile(r"//\s*trips:\s*(.+?)(?:,\s*(?:unrolled\s+(\d+)|(versioned)))?\s*$")
_KEYWORDS = {"for", "if", "while", "switch", "catch", "return", "sizeof", "__launch_bounds__"}


def parse_source(path: Path) -> SourceFile:
    text = path.read_text()
    src = SourceFile(path.name, text.splitlines(), _blank(text))
    code = src.code
    # functions: a '{' after ')' outside any function body
    depth_kinds: list[str] = []
    i = 0
    while i < len(code):
        c = code[i]
        if c == "{":
            kind = "block"
            if "function" not in depth_kinds:
                before = code[:i].rstrip()
                before = re.sub(r"(\bconst|\bnoexcept|\boverride)\s*$", "", before).rstrip()
                if before.endswith(")"):
                    opening = _reverse_match(code, len(before) - 1)
                    name = re.search(r"([A-Za-z_]\w*)\s*$", code[:opening])
                    if name and name.group(1) not in _KEYWORDS:
                        params = [_param_name(p) for p in _split_top(code[opening + 1:len(before) - 1])]
                        template = re.search(r"template\s*<([^{};]*)>\s*(?:[^{};<>]|<[^{};]*>)*$",
                                             code[:name.start()])
                        template_params = ([_param_name(p) for p in _split_top(template.group(1))]
                                           if template else [])
                        end = _match(code, i, "{", "}")
                        src.functions.append(Function(name.group(1), src.line_of(i), src.line_of(end),
                                                      [p for p in params if p and p != "void"], template_params))
                        kind = "function"
            depth_kinds.append(kind)
        elif c == "}":
            depth_kinds.pop()
        i += 1
    for m in re.finditer(r"\bfor\s*\(", code):
        close = _match(code, m.end() - 1, "(", ")")
        end = _statement_end(code, close + 1)
        line = src.line_of(m.start())
        trips, unrolled = _annotation(src.lines, line)
        loop = SourceLoop(path.name, line, src.line_of(end), trips, unrolled)
        loop.function = next((f for f in src.functions if f.line <= line <= f.end), None)
        src.loops.append(loop)
    return src


def _reverse_match(code: str, close: int) -> int:
    depth = 0
    for i in range(close, -1, -1):
        if code[i] == ")":
            depth += 1
        elif code[i] == "(":
            depth -= 1
            if depth == 0:
                return i
    raise ValueError("unbalanced ()")


def _annotation(lines: list[str], line: int) -> tuple[str | None, int]:
    """The `// trips:` comment on the for's line, or on the comment / pragma lines just above it."""
    candidates = [lines[line - 1]]
    i = line - 2
    while i >= 0 and lines[i].strip().startswith(("//", "#pragma")):
        candidates.append(lines[i])
        i -= 1
    for text in candidates:
        if m := _TRIPS.search(text):
            return m.group(1).strip(), (0 if m.group(3) else int(m.group(2) or 1))
    return None, 1


def constants(files: dict[str, SourceFile]) -> dict:
    """The ``constexpr int`` constants of the sources (each evaluated once the constants it uses are)."""
    # element types stand for their sizes, so that sizeof(T) is T's size in bytes
    env: dict = {"cdiv": lambda a, b: -(-a // b), "sizeof": lambda size: size, "float": 4, "__half": 2,
                 "__nv_bfloat16": 2, "int64_t": 8, "int": 4}
    pending = [declarator.partition("=") for src in files.values()
               for m in re.finditer(r"constexpr\s+int(?:64_t|32_t)?\s+(\w+\s*=[^;]+);", src.code)
               for declarator in _split_top(m.group(1))]
    while pending:
        left = []
        for name, _, value in pending:
            try:
                env[name.strip()] = _evaluate(value, env)
            except Exception:  # depends on a constant not evaluated yet, or on something else
                left.append((name, _, value))
        if len(left) == len(pending):
            break  # the rest are not needed for trip counts
        pending = left
    return env


def _python(expr: str) -> str:
    expr = re.sub(r"static_cast<[^>]*>", "", expr)
    expr = re.sub(r"\b(\d+)(?:LL|ll|L|l|u|U)+\b", r"\1", expr)
    expr = expr.replace("&&", " and ").replace("||", " or ")
    expr = re.sub(r"(?<![/])/(?![/])", "//", expr)
    expr = re.sub(r"\btrue\b", "True", re.sub(r"\bfalse\b", "False", expr))
    # C's `a ? b : c`
    if (m := re.fullmatch(r"(.+?)\?(.+):(.+)", expr.strip())) and "if" not in expr:
        expr = f"(({m.group(2)}) if ({m.group(1)}) else ({m.group(3)}))"
    return expr


def _evaluate(expr: str, env: dict):
    """A C++ expression (or a trip annotation: C++ arithmetic, `cdiv(a, b)`, `x if c else y`) in ``env``; integer
    division as in C++ for the non-negative values here."""
    return eval(compile(_python(expr).strip(), "<trips>", "eval"), {"__builtins__": {}}, env)


# -------------------------------------------------------------------------------------- SASS and loops
_LINE = re.compile(r'//## File "([^"]+)", line (\d+)(?: inlined at "([^"]+)", line (\d+))?')


def frames(listing: str) -> list[list[tuple[str, int]]]:
    """Per instruction (in sass.parse's order), its source frames innermost first: [(file, line), ...]."""
    out, chain, current = [], [], []
    for raw in listing.splitlines():
        if m := _LINE.search(raw):
            chain.append((Path(m.group(1)).name, int(m.group(2))))
            continue
        if sass._LABEL.match(raw):
            continue
        if sass._INSTRUCTION.search(raw):
            if chain:
                current, chain = chain, []
            out.append(current)
    return out


@dataclass
class Kernel:
    name: str  # readable
    file: str
    registers: int
    shared_static: int
    instructions: list
    frames: list
    main_end: int  # index of the last unconditional EXIT
    loops: list
    subroutines: dict  # CALL target index -> size

    @property
    def static(self) -> int:
        return len(self.instructions)

    def tensor_core_static(self) -> dict:
        return dict(Counter(i.base for i in self.instructions if i.base in sass.TENSOR_CORE))


def kernel_of(record: dict) -> Kernel:
    instructions = sass.parse(record["listing"])
    chains = frames(record["listing"])[:len(instructions)]
    exits = [i for i, ins in enumerate(instructions) if ins.base == "EXIT" and not ins.predicated]
    main_end = exits[-1] if exits else len(instructions) - 1
    loops = sass.find_loops(instructions[:main_end + 1])
    subroutines = {}
    for ins in instructions[:main_end + 1]:
        if ins.base == "CALL" and getattr(ins, "target", None) is not None and ins.target not in subroutines:
            end = next((j for j in range(ins.target, len(instructions)) if instructions[j].base == "RET"),
                       len(instructions) - 1)
            subroutines[ins.target] = end - ins.target + 1
    return Kernel(readable(record["kernel"]), record["file"], record["registers"], record["shared_static"],
                  instructions, chains, main_end, loops, subroutines)


class Sources:
    def __init__(self, source_root: Path = ROOT):
        csrc = Path(source_root) / "csrc"
        paths = sorted((csrc / "cuda").glob("*.cu*")) + sorted((csrc / "cuda").glob("*.h")) + [csrc / "index_maps.h"]
        self.files = {p.name: parse_source(p) for p in paths}
        self.constants = constants(self.files)

    def innermost_loop(self, file: str, line: int) -> SourceLoop | None:
        src = self.files.get(file)
        if src is None:
            return None
        inside = [l for l in src.loops if l.line <= line <= l.end]
        return min(inside, key=lambda l: l.end - l.line) if inside else None

    def function_at(self, file: str, line: int) -> Function | None:
        src = self.files.get(file)
        return next((f for f in src.functions if f.line <= line <= f.end), None) if src else None

    def frame_env(self, chain: list[tuple[str, int]], level: int, launch_env: dict) -> dict:
        """The names visible to trip expressions at frame ``level`` of ``chain``: the launch's (the outermost
        frame, the kernel) or a helper's parameters bound from its call site at level + 1."""
        env = {**self.constants, **launch_env}  # the launch's values are visible in helpers too (a type's size)
        if level == len(chain) - 1:
            return env
        file, line = chain[level]
        function = self.function_at(file, line)
        caller_file, caller_line = chain[level + 1]
        if function is None:
            return self.frame_env(chain, level + 1, launch_env)
        outer = self.frame_env(chain, level + 1, launch_env)
        template_args, args = self._call_arguments(caller_file, caller_line, function.name)
        for names, values in ((function.template_params, template_args), (function.params, args)):
            for index, name in enumerate(names):
                env.pop(name, None)  # a parameter hides the launch's value of that name, bound or not
                try:
                    env[name] = _evaluate(values[index], outer)
                except Exception:  # not given (a deduced template argument), or not needed (a pointer, a tile)
                    pass
        return env

    def _call_arguments(self, file: str, line: int, name: str) -> tuple[list[str], list[str]]:
        src = self.files[file]
        start = src.offset_of(line)
        m = re.compile(rf"\b{re.escape(name)}\s*(<)?").search(src.code, start)
        if m is None:
            raise ValueError(f"{file}:{line}: no call of {name}")
        template_args, i = [], m.end()
        if m.group(1):
            close = _match(src.code, m.end() - 1, "<", ">")
            template_args, i = _split_top(src.code[m.end():close]), close + 1
        opening = src.code.index("(", i)
        close = _match(src.code, opening, "(", ")")
        return template_args, _split_top(src.code[opening + 1:close])


def assign_trips(kernel: Kernel, sources: Sources, launch_env: dict) -> list[str]:
    """Trip counts of the kernel's SASS loops for this launch; notes, one per loop."""
    groups: dict = {}
    for loop in sass.walk(kernel.loops):
        chain = kernel.frames[loop.end] or []
        found = None
        for level, (file, line) in enumerate(chain):
            if (source := sources.innermost_loop(file, line)) is not None:
                found = (source, level, tuple(chain[level + 1:]))
                break
        if found is None:
            raise ValueError(f"{kernel.name}: the SASS loop at instructions {loop.start}-{loop.end} maps to no "
                             f"C++ loop (branch frames {chain})")
        source, level, outer = found
        if source.trips is None:
            raise ValueError(f"{kernel.name}: {source.file}:{source.line} compiles to a loop (instructions "
                             f"{loop.start}-{loop.end}); give it a '// trips: ...' comment")
        groups.setdefault((source.file, source.line, outer), []).append((loop, source, chain, level))
    notes = []
    for copies in groups.values():
        _, source, chain, level = copies[0]
        env = sources.frame_env(chain, level, launch_env)
        try:
            trips = int(_evaluate(source.trips, env))
        except Exception as error:
            raise ValueError(f"{kernel.name}: {source.file}:{source.line}: cannot evaluate trips "
                             f"'{source.trips}' ({error})") from None
        if len(copies) > 1 and source.unrolled == 1:
            raise ValueError(f"{kernel.name}: {source.file}:{source.line} compiles to {len(copies)} loops; say "
                             "how ('// trips: ..., unrolled U' or '..., versioned')")
        copies = sorted(copies, key=lambda c: c[0].end - c[0].start, reverse=True)
        unrolled = max(1, source.unrolled)
        if len(copies) == 1:  # unrolled with the remainder predicated (or none), or not unrolled
            copies[0][0].trips = -(-trips // unrolled)
            parts = f"{trips}" if unrolled == 1 else f"{trips} ({copies[0][0].trips} x unrolled {unrolled})"
        elif source.unrolled == 0:  # the largest copy runs
            copies[0][0].trips = trips
            for loop, *_ in copies[1:]:
                loop.trips = 0
            parts = f"{trips} (1 of {len(copies)} versions)"
        else:  # an unrolled copy and remainder copies
            copies[0][0].trips = trips // unrolled
            for loop, *_ in copies[1:]:
                loop.trips = trips % unrolled
            parts = f"{trips} ({trips // unrolled} x unrolled {unrolled} + {trips % unrolled})"
        notes.append(f"{source.file}:{source.line} {source.trips} = {parts}")
    return notes


def dynamic_counts(kernel: Kernel) -> tuple[int, dict]:
    """(instructions per warp per block, tensor-core instructions by family) with the loops' trips assigned."""
    main = kernel.instructions[:kernel.main_end + 1]
    mult = sass.multipliers(main, kernel.loops)
    total, cores = 0, Counter()
    for ins, m in zip(main, mult):
        total += m
        if ins.base in sass.TENSOR_CORE:
            cores[ins.base] += m
        if ins.base == "CALL" and getattr(ins, "target", None) in kernel.subroutines:
            total += m * kernel.subroutines[ins.target]
    return total, dict(cores)


# ---------------------------------------------------------------------------------- launches of a call
def _type_name(workload) -> str:
    import torch

    return {torch.bfloat16: "__nv_bfloat16", torch.float16: "__half", torch.float32: "float"}[workload.dtype]


def kernel_limits(source_root: Path = ROOT) -> dict:
    """csrc/cuda/kernel_limits.h's limits (cuda_check compiles and runs its JSON printer)."""
    from tools import cuda_check

    with tempfile.TemporaryDirectory() as tmp:
        saved, cuda_check.CSRC = cuda_check.CSRC, Path(source_root) / "csrc"
        try:
            code, error, limits = cuda_check.kernel_limits(Path(tmp))
        finally:
            cuda_check.CSRC = saved
    if code:
        raise RuntimeError(f"kernel_limits.h: {error}")
    return limits


def supported(workload, limits: dict) -> str | None:
    """Why the cuda backend does not run the workload (None: it does)."""
    if workload.tokens > limits["max_tokens"]:
        return f"window of {workload.tokens} tokens > {limits['max_tokens']}"
    d = workload.head_dim
    if d % limits["head_dim_multiple"] or d > limits["max_head_dim"]:
        return f"head_dim {d}"
    return None


def launches(workload, limits: dict, consts: dict) -> dict[str, list[dict]]:
    """The kernels one cuda-backend call launches (csrc/cuda/attention_*.cu's launchers), per part:
    [{"match": (name, template arguments), "programs", "warps", "shared", "env", "bytes"}]."""
    w = workload
    e, n, heads, d, c = w.element_bytes, w.tokens, w.heads, w.head_dim, w.channels
    windows = w.windows
    threads = limits["threads"]
    smem = {(r["pass"], r["element_bytes"], r["head_dim"]): r["bytes"] for r in limits["attention_smem"]}
    per_chunk = -(-windows // 1024)  # launch_api.h: backward_windows_per_chunk
    chunks = -(-windows // per_chunk)
    sizes = getattr(w, "sizes", (w.height, w.width))  # (H, W), or (D, H, W) of a volume
    padded = any(size % m for size, m in zip(sizes, w.window))  # then every window counts as holding padding
    grid = SimpleNamespace(tokens=n, windows_per_image=windows // w.batch, pixels=math.prod(sizes))
    args = SimpleNamespace(batch=w.batch, heads=heads, head_dim=d, grid=grid, windows_per_chunk=per_chunk,
                           chunks=chunks)
    base_env = {"args": args, "T": e, "D": d, "n": n, "d": d, "heads": heads, "padded": padded, "vector": True}
    sf = traffic.sector_factor(w)
    token_rows = w.map_tokens * e * sf  # bytes of one channel column of head slices over the map
    lse = windows * heads * n * 4
    bias = heads * n * n * e
    t = _type_name(w)
    forward = [{"match": ("attention_forward_kernel", (t, str(d))), "programs": windows * heads,
                "warps": threads // 32, "shared": smem[("forward", e, d)], "env": base_env,
                "bytes": int(token_rows * 4 * c + lse + bias)}]
    bias_size, pad_size = heads * n * n, 3 * c
    columns, groups = consts.get("kReduceColumns", 256), consts.get("kReduceGroups", 1)
    backward = [{"match": ("attention_backward_kernel", (t, str(d))), "programs": chunks * heads,
                 "warps": threads // 32, "shared": smem[("backward", e, d)], "env": base_env,
                 "bytes": int(token_rows * 7 * c + lse + bias + chunks * (bias_size + pad_size) * 4)}]
    for size in (bias_size, pad_size):
        backward.append({"match": ("reduce_partials", (t,)), "programs": -(-size // columns),
                         "warps": columns * groups // 32, "shared": 0,
                         "env": {"partials": None, "chunks": chunks, "size": size, "out": None},
                         "bytes": chunks * size * 4 + size * e})
    out = {"forward": forward, "backward": backward}
    if ("flash_forward", e, d) in smem:  # the flash-style forward (SWIN_KERNELS_CUDA_KERNELS=flash): 16-bit types
        # flash_window.h: windows_per_block, each block a run of them of one image and head (the bias tile staged once)
        per_image = windows // w.batch
        per_block = consts["kMaxWindowsPerBlock"]
        while per_block > 1 and (per_block > per_image or
                                 w.batch * heads * -(-per_image // per_block) < consts["kMinBlocks"]):
            per_block //= 2
        blocks = w.batch * heads * -(-per_image // per_block)
        out["flash forward"] = [{"match": ("attention_flash_forward_kernel", (t, str(d))), "programs": blocks,
                                 "warps": threads // 32, "shared": smem[("flash_forward", e, d)],
                                 "env": {**base_env, "windows_per_block": per_block},
                                 "bytes": int(token_rows * 4 * c + lse + blocks * n * n * e)}]
    if ("flash_backward", e, d) in smem and not padded:  # the flash-style backward: maps without padding tokens
        flash_chunks = w.batch * -(-per_image // per_block)
        out["flash backward"] = [
            {"match": ("attention_flash_backward_kernel", (t, str(d))), "programs": flash_chunks * heads,
             "warps": threads // 32, "shared": smem[("flash_backward", e, d)],
             "env": {**base_env, "windows_per_block": per_block},
             "bytes": int(token_rows * 7 * c + lse + flash_chunks * heads * n * n * (e + 4))},
            {"match": ("reduce_partials", (t,)), "programs": -(-bias_size // columns),
             "warps": columns * groups // 32, "shared": 0,
             "env": {"partials": None, "chunks": flash_chunks, "size": bias_size, "out": None},
             "bytes": flash_chunks * bias_size * 4 + bias_size * e}]
    return out


# The kernel variants of a cuda-backend call: the verified kernels (the default) and, where they run, the flash-style
# kernels (SWIN_KERNELS_CUDA_KERNELS=flash; the verified backward where the flash one does not run: maps with
# padding). {variant: (forward part, backward parts in order of preference)}
VARIANTS = {"verified": ("forward", ("backward",)), "flash": ("flash forward", ("flash backward", "backward"))}


def variant_parts(parts: dict, variant: str) -> dict | None:
    """{"forward": ..., "backward": ...} of a variant's call, or None where the variant does not run the workload."""
    forward, backwards = VARIANTS[variant]
    if forward not in parts:
        return None
    return {"forward": parts[forward], "backward": parts[next(b for b in backwards if b in parts)]}


def _matches(kernel: Kernel, match: tuple) -> bool:
    name, template = match
    m = re.fullmatch(r"(\w+)<(.*)>", kernel.name)
    if not m or m.group(1) != name:
        return False
    given = [a.strip() for a in m.group(2).split(",")]
    return given == list(template[:len(given)])  # kernels not templated on head_dim take the dtype only


def analyse(arch: int = 90, source_root: Path = ROOT, chosen=()) -> dict:
    """{"static": [per kernel], "workloads": [per workload: parts with their launches, or why not supported]}."""
    records = compile_listings(arch, source_root)
    if not records:
        return {}
    kernels = [kernel_of(r) for r in records]
    sources = Sources(source_root)
    limits = kernel_limits(source_root)
    static = [{"kernel": k.name, "file": k.file, "registers": k.registers, "shared_static": k.shared_static,
               "static_instructions": k.static, "tensor_core": k.tensor_core_static()} for k in kernels]
    out = []
    for w in chosen:
        why = supported(w, limits)
        if why is not None:
            out.append({"workload": w.name, "unsupported": why})
            continue
        parts = {}
        for part, items in launches(w, limits, sources.constants).items():
            records_ = []
            for item in items:
                kernel = next((k for k in kernels if _matches(k, item["match"])), None)
                if kernel is None:
                    raise ValueError(f"no compiled kernel {item['match']} for {w.name}")
                notes = assign_trips(kernel, sources, item["env"])
                instructions, cores = dynamic_counts(kernel)
                records_.append({"kernel": kernel.name, "programs": item["programs"], "warps": item["warps"],
                                 "registers": kernel.registers, "shared": item["shared"] + kernel.shared_static,
                                 "ctas_per_sm": hardware.ctas_per_sm(kernel.registers,
                                                                     item["shared"] + kernel.shared_static,
                                                                     item["warps"]),
                                 "instructions": instructions, "static_instructions": kernel.static,
                                 "tensor_core": cores, "bytes": item["bytes"], "loops": notes})
            floor = traffic.floor_bytes(w, part.removeprefix("flash "))
            parts[part] = {"kernels": records_, "floor_bytes": floor}
        out.append({"workload": w.name, "parts": parts})
    return {"static": static, "workloads": out}


# -------------------------------------------------------------------------------------------- reporting
def call_times(parts: dict, gpu=hardware.H200) -> dict:
    eff = model.calibration()["efficiency"]
    forward = model.call_time(parts["forward"]["kernels"], gpu, eff)
    backward = model.call_time(parts["backward"]["kernels"], gpu, eff)
    return {"forward": forward, "forward+backward": forward + backward}


def comparison(cuda: dict, triton_results: list[dict]) -> list[dict]:
    """Per workload, kernel variant and part: modelled H100 and H200 device time of the cuda and triton calls and
    their ratio (variant "verified": the default kernels; "flash": the flash-style forward, 16-bit types only)."""
    rows = []
    triton = {r["workload"]: r for r in triton_results}
    for w in cuda.get("workloads", []):
        t = triton.get(w["workload"])
        for variant in VARIANTS:
            parts = variant_parts(w["parts"], variant) if "parts" in w else None
            if parts is None and variant != "verified":
                continue
            for part in ("forward", "forward+backward"):
                rows.append(_comparison_row(w, t, parts, variant, part))
    return rows


def _comparison_row(w: dict, t: dict | None, parts: dict | None, variant: str, part: str) -> dict:
    row = {"workload": w["workload"], "variant": variant, "part": part}
    for gpu in hardware.GPUS:
        tt = call_times(t["parts"], gpu)[part] if t else None
        ct = call_times(parts, gpu)[part] if parts is not None else None
        row[f"triton {gpu.name} us"] = tt * 1e6 if tt is not None else None
        row[f"cuda {gpu.name} us"] = ct * 1e6 if ct is not None else None
        row[f"ratio {gpu.name}"] = ct / tt if ct is not None and tt else None
    row["note"] = w.get("unsupported", "")
    return row


def markdown(cuda: dict, triton_results: list[dict] = ()) -> str:
    if not cuda:
        return ""
    lines = ["", "CUDA kernels (csrc/cuda, nvcc -cubin sm_90):", "",
             "| kernel | file | SASS instructions (static) | regs | smem (static) | tensor core |",
             "|---|---|---|---|---|---|"]
    for r in cuda["static"]:
        cores = " ".join(f"{k} x{v}" for k, v in sorted(r["tensor_core"].items())) or "none"
        lines.append(f"| {r['kernel']} | {r['file']} | {r['static_instructions']} | {r['registers']} | "
                     f"{r['shared_static']} | {cores} |")
    eff = model.calibration()["efficiency"]
    lines += ["", "CUDA kernels per call (instructions per warp per block, loops x trip counts):", "",
              "| workload | part | kernel | instr/block | regs | smem | CTAs/SM | blocks | MB | H100 us | H200 us |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for w in cuda["workloads"]:
        if "parts" not in w:
            lines.append(f"| {w['workload']} | | not run by the cuda backend: {w['unsupported']} | | | | | | | | |")
            continue
        for part, data in w["parts"].items():
            for k in data["kernels"]:
                times = [model.kernel_time(k, g, eff)["time_s"] * 1e6 for g in hardware.GPUS]
                lines.append(f"| {w['workload']} | {part} | {k['kernel']} | {k['instructions']} | {k['registers']} | "
                             f"{k['shared']} | {k['ctas_per_sm']} | {k['programs']} | {k['bytes'] / 1e6:.1f} | "
                             + " | ".join(f"{t:.1f}" for t in times) + " |")
    rows = comparison(cuda, triton_results)
    if rows:
        lines += ["", "Modelled device time per call, cuda vs triton backend (ratio = cuda / triton):", "",
                  "| workload | cuda kernels | part | triton H100 us | cuda H100 us | ratio H100 | triton H200 us | "
                  "cuda H200 us | ratio H200 |", "|---|---|---|---|---|---|---|---|---|"]

        def fmt(v, digits=1):
            return "" if v is None else f"{v:.{digits}f}"

        for r in rows:
            if r["note"]:
                lines.append(f"| {r['workload']} | {r['variant']} | {r['part']} | {fmt(r['triton H100 SXM us'])} | "
                             f"n/a ({r['note']}) | | {fmt(r['triton H200 us'])} | n/a | |")
                continue
            lines.append(f"| {r['workload']} | {r['variant']} | {r['part']} | {fmt(r['triton H100 SXM us'])} | "
                         f"{fmt(r['cuda H100 SXM us'])} | {fmt(r['ratio H100 SXM'], 2)} | {fmt(r['triton H200 us'])} | "
                         f"{fmt(r['cuda H200 us'])} | {fmt(r['ratio H200'], 2)} |")
    return "\n".join(lines)
