"""A newcomer's first hour: imports in the project's venv, the self-check, the demo's time budget, the wheel's
contents and the README's API section run as written."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
import torch

import swin_kernels
from swin_kernels import selfcheck
from tools import torchvision_compat

REPO = Path(__file__).resolve().parent.parent
IMPORTS = "import torchvision, timm\nfrom transformers import SwinForImageClassification\n"


def _run(code: str, *flags: str, timeout: int = 300, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *flags, "-c", code], capture_output=True, text=True, timeout=timeout,
                          cwd=REPO, env=env)


# --------------------------------------------------------------------------------- item 10: imports in the venv
def test_import_hook_lets_a_plain_script_import_torchvision(tmp_path):
    """The .pth hook alone (no site-packages .pth files of the venv, no compat call) makes the imports work, and
    imports nothing at interpreter start."""
    if importlib_find("torchvision") is None:
        pytest.skip("torchvision is not installed")
    torchvision_compat.install_into(str(tmp_path))
    code = (f"import site, sys\nsys.path.append({sysconfig.get_paths()['purelib']!r})\n"
            f"site.addsitedir({str(tmp_path)!r})\n"
            "assert 'torch' not in sys.modules, 'the hook imported torch at start-up'\n"
            + IMPORTS + "print(torchvision.models.swin_t(num_classes=3)(__import__('torch').randn(1, 3, 64, 64)).shape)")
    result = _run(code, "-S")  # -S: the venv's own .pth files (an installed hook included) are not read
    assert result.returncode == 0, result.stderr[-3000:]
    assert "torch.Size([1, 3])" in result.stdout


def importlib_find(name):
    import importlib.util

    return importlib.util.find_spec(name)


def test_project_venv_imports_torchvision_timm_transformers():
    """What `make setup` leaves: a plain script run by the venv's python imports them."""
    if sys.prefix == sys.base_prefix:
        pytest.skip("not run from a virtual environment made by `make setup`")
    result = _run("import sys\n" + IMPORTS)
    assert result.returncode == 0, ("a plain script cannot import torchvision/timm/transformers in this venv "
                                    f"(run `make setup`): {result.stderr[-2000:]}")


# ------------------------------------------------------------------------------------ item 12: the self-check
def test_selfcheck_prints_and_passes():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    result = subprocess.run([sys.executable, "-m", "swin_kernels"], capture_output=True, text=True, timeout=300,
                            cwd=REPO, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert f"swin-kernels {swin_kernels.__version__}" in out and f"torch    {torch.__version__}" in out
    assert "cpp kernel build:" in out and "GPU " in out and "Triton " in out
    for name in ("reference", "triton", "cpp", "cuda"):
        assert re.search(rf"^  {name} +(can run here|cannot run here: .+)$", out, re.M), name
    runnable = re.findall(r"^  (\w+) +can run here$", out, re.M)
    assert "reference" in runnable
    for name in runnable:
        assert re.search(rf"^  {name} +cpu +float32 +attention .* ok$", out, re.M), name
    assert re.search(r"^all \d+ checks pass", out, re.M)


def test_selfcheck_fails_on_a_wrong_backend(monkeypatch, capsys):
    from swin_kernels.ops import reference_ops

    right = reference_ops.window_attention
    monkeypatch.setattr(reference_ops, "window_attention", lambda *args: right(*args) * 1.001)
    assert selfcheck.main(["--backend", "reference"]) == 1
    out = capsys.readouterr().out
    assert "WRONG" in out and "FAILED:" in out


def test_selfcheck_counts_a_crash_as_a_failure(monkeypatch):
    from swin_kernels.ops import reference_ops

    def broken(*args):
        raise RuntimeError("kernel exploded")

    monkeypatch.setattr(reference_ops, "window_partition", broken)
    checks = selfcheck.run_checks(["reference"])
    crashed = [c for c in checks if c.failure]
    assert crashed and all("kernel exploded" in c.failure for c in crashed) and not all(c.passed for c in checks)


# ---------------------------------------------------------------------------------- item 13: the demo's budget
def test_progress_estimates_time_left_and_ends_sections():
    from benchmarks.progress import Progress

    lines = []

    class Sink:
        def write(self, text):
            lines.append(text)

        def flush(self):
            pass

    progress = Progress(stream=Sink(), plan={"a": 0.0, "b": 100.0})
    progress.begin("a")  # a zero budget: out of time at once
    assert progress.out_of_time()
    progress.begin("b")  # ends 100 s after the run's start
    progress("step")
    assert "min left" in lines[0] and not progress.out_of_time()
    assert 1.6 < progress.time_left() / 60 <= 100 / 60


def test_demo_sections_stop_when_out_of_time(tmp_path):
    """Each budgeted section leaves out what it has no time for, and says so in the report."""
    from benchmarks import complexity, end_to_end
    from benchmarks.comparison import run_comparison
    from benchmarks.report import comparison_section, complexity_section
    from benchmarks.shapes import swin_t_stage1

    not_run = []
    results = run_comparison(swin_t_stage1(), [torch.float32], torch.device("cpu"), ("forward",),
                             out_of_time=lambda: True, not_run=not_run)
    assert results == [] and len(not_run) == 4
    assert "**Out of time:**" in comparison_section(results, 1, not_run)
    study = complexity.run(out_of_time=lambda: True, plot_dir=tmp_path)
    assert study.sides_left_out and all(not s.tokens for s in study.series)
    assert "**Out of time:**" in complexity_section(study)
    assert "**Out of time:**" in end_to_end.report_section(full=False, out_of_time=lambda: True)


def test_demo_default_is_the_quick_plan():
    from benchmarks import demo

    args = demo.parse_args([])
    assert not args.full and args.time_budget is None and demo.DEFAULT_TIME_BUDGET_S <= 180
    assert abs(sum(demo.BUDGET_SHARES.values()) - 1.0) < 1e-9
    assert set(demo.COMPILING_CONTENDERS) <= set(demo.CONTENDERS)


# ------------------------------------------------------------------------------ item 14: a wheel of itself only
def test_wheel_ships_only_the_runtime_package(tmp_path):
    """A wheel built from the tree holds swin_kernels' modules, every one of them, and nothing else."""
    source = tmp_path / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.so", "build", "*.egg-info", ".venv", "results", ".git")
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(REPO / name, source / name if source.exists() else _mkdir(source) / name)
    for name in ("swin_kernels", "tools", "tests", "benchmarks", "csrc"):
        if (REPO / name).exists():
            shutil.copytree(REPO / name, source / name, ignore=ignore)
    env = dict(os.environ, SWIN_KERNELS_SKIP_EXTENSION="1")  # the C++ build takes minutes; not what is tested
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-build-isolation", "--no-deps", "-q",
                             "-w", str(tmp_path / "dist"), str(source)], capture_output=True, text=True,
                            timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    outside = [n for n in names if not n.startswith("swin_kernels/") and ".dist-info/" not in n]
    assert not outside, f"the wheel ships more than the package: {outside}"
    assert not [n for n in names if "/dev/" in n or "/tests/" in n or Path(n).name.startswith("test_")]
    shipped = {n for n in names if n.endswith(".py")}
    runtime = {p.relative_to(source).as_posix() for p in (source / "swin_kernels").rglob("*.py")}
    assert shipped == runtime, f"missing: {sorted(runtime - shipped)}; extra: {sorted(shipped - runtime)}"


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True)
    return path


# ------------------------------------------------------------------------ item 14: the README's API, as written
def test_readme_api_section_runs_as_written():
    text = (REPO / "README.md").read_text()
    api = text[text.index("\n## API\n"):]
    api = api[:api.index("\n## ", 1)]
    blocks = re.findall(r"```python\n(.*?)```", api, re.S)
    assert blocks, "the README's API section has no python block"
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    result = _run("\n".join(blocks), env=env)  # a fresh interpreter: no test-suite set-up
    assert result.returncode == 0, result.stderr[-3000:]


def test_dense_bias_is_public():
    table = torch.randn(13 * 13, 2, dtype=torch.float64)
    bias = swin_kernels.dense_bias(table, 7)
    rows, cols = torch.meshgrid(torch.arange(7), torch.arange(7), indexing="ij")
    rows, cols = rows.flatten(), cols.flatten()
    index = (rows[:, None] - rows[None, :] + 6) * 13 + (cols[:, None] - cols[None, :] + 6)
    assert torch.equal(bias, table[index].permute(2, 0, 1))
    assert "dense_bias" in swin_kernels.__all__
