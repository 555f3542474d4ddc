"""Trip counts of a kernel's SASS loops, from the Python source: each loop is mapped to the innermost `for` of
the kernel whose lines hold most of the loop's instructions, and that `for`'s range() is evaluated with the
launch's constexprs and arguments (and the kernel's top-level assignments that depend only on them, program 0)."""

from __future__ import annotations

import ast
import inspect
import os
import textwrap

from .sass import Loop, walk


class _TL:
    """What top-level kernel assignments may call, for program 0."""

    @staticmethod
    def program_id(axis):
        return 0

    minimum, maximum = staticmethod(min), staticmethod(max)

    @staticmethod
    def cdiv(a, b):
        return -(-a // b)


def _environment(fn, values: dict, body: list) -> dict:
    env = {k: v for k, v in values.items() if isinstance(v, (int, float, bool, str)) or v is None}
    env.update(tl=_TL, triton=_TL, min=min, max=max)
    for node in body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                env[node.targets[0].id] = eval(compile(ast.Expression(node.value), "<kernel>", "eval"),
                                               {"__builtins__": {}}, env)
            except Exception:  # depends on tensors or loop variables: not needed for trip counts
                pass
    return env


def source_loops(fn) -> tuple[list[ast.For], dict, int]:
    """(for-nodes with absolute line numbers, environment builder input, first line) of a JITFunction."""
    lines, first = inspect.getsourcelines(fn.fn)
    tree = ast.parse(textwrap.dedent("".join(lines)))
    func = tree.body[0]
    ast.increment_lineno(tree, first - 1)
    fors = [n for n in ast.walk(func) if isinstance(n, (ast.For, ast.While))]
    return fors, func, first


def assign_trips(loops: list[Loop], instructions, fn, values: dict) -> list[str]:
    """Set ``trips`` on every loop; returns a description per loop ("line 80 range(...) = 16")."""
    fors, func, _ = source_loops(fn)
    env = _environment(fn, values, func.body)
    # by file name: Triton's own cache may hand back a binary built from an identical file elsewhere
    source_file = os.path.basename(fn.fn.__code__.co_filename)

    def trips_of(node) -> int | None:
        call = node.iter if isinstance(node, ast.For) else None
        if not (isinstance(call, ast.Call) and getattr(call.func, "id", "") in ("range", "static_range")):
            return None
        try:
            return len(range(*[eval(compile(ast.Expression(a), "<kernel>", "eval"), {"__builtins__": {}}, env)
                               for a in call.args]))
        except Exception:
            return None

    # a loop of one iteration or none compiles to straight code (its bounds are constants): no SASS loop
    constant = {k for k, v in values.items() if k.isupper()}  # constexprs are upper case in these kernels

    def folded(node) -> bool:
        names = {n.id for n in ast.walk(node.iter) if isinstance(n, ast.Name)} - {"range", "static_range"}
        return names <= constant and (trips_of(node) or 2) <= 1

    fors = [f for f in fors if not folded(f)]
    notes = []
    mapped: dict[int, ast.AST] = {}

    def inside(outer, inner) -> bool:
        return outer is not inner and outer.lineno <= inner.lineno and inner.end_lineno <= outer.end_lineno

    def place(loop: Loop) -> None:
        for child in loop.children:
            place(child)
        nested = {i for c in loop.children for i in range(c.start, c.end + 1)}
        # the loop's own body votes; it must enclose the source loops of its nested SASS loops
        lines = [ins.line for i, ins in enumerate(instructions[loop.start:loop.end + 1], loop.start)
                 if ins.file and os.path.basename(ins.file) == source_file and i not in nested]
        pool = [f for f in fors if all(inside(f, mapped[id(c)]) for c in loop.children)]
        candidates = [f for f in pool if lines and sum(f.lineno <= l <= f.end_lineno for l in lines) >= 0.5 * len(lines)]
        candidates = candidates or ([min(pool, key=lambda f: f.end_lineno - f.lineno)] if loop.children and pool
                                    else [])
        if not candidates:
            raise ValueError(f"{fn.fn.__name__}: a SASS loop (instructions {loop.start}-{loop.end}) maps to no "
                             "source loop")
        mapped[id(loop)] = min(candidates, key=lambda f: f.end_lineno - f.lineno)

    for loop in loops:
        place(loop)
    for loop in walk(loops):
        node = mapped[id(loop)]
        call = node.iter if isinstance(node, ast.For) else None
        if not (isinstance(call, ast.Call) and getattr(call.func, "id", "") in ("range", "static_range")):
            raise ValueError(f"{fn.fn.__name__} line {node.lineno}: only range() loops have a known trip count")
        try:
            bounds = [eval(compile(ast.Expression(a), "<kernel>", "eval"), {"__builtins__": {}}, env)
                      for a in call.args]
        except Exception as error:
            raise ValueError(f"{fn.fn.__name__} line {node.lineno}: cannot evaluate {ast.unparse(call)} from the "
                             f"launch arguments ({error})") from None
        loop.trips = max(0, len(range(*bounds)))
        notes.append(f"line {node.lineno} {ast.unparse(call)} = {loop.trips}")
    return notes
