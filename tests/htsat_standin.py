"""Import laion_clap's HTSAT audio encoder (``laion_clap.clap_module.htsat``) on a machine without its audio stack.

laion_clap (installed with --no-deps: its pinned requirements do not install beside numpy 2) imports, at module
import time, torchlibrosa (its STFT, log-mel filter bank and SpecAugment front end, which needs librosa and numba)
and h5py (its dataset utilities), and its package ``__init__`` imports the whole CLAP model (text towers, hub
downloads). The Swin blocks under test (``SwinTransformerBlock``, ``WindowAttention``, ``BasicLayer`` and the
``HTSAT_Swin_Transformer`` that stacks them) use none of them.

``import_htsat()`` registers the two parent packages as bare namespaces pointing at the installed files (their
``__init__`` is not run), and stand-ins for ``torchlibrosa.stft``, ``torchlibrosa.augmentation`` and ``h5py`` whose
every member raises when used, naming itself; then it imports htsat.py, the library's own unmodified code.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import os
import sys
import types


class AudioFrontEndMissing(RuntimeError):
    pass


def _missing(name: str):
    class Missing:
        def __init__(self, *args, **kwargs):
            raise AudioFrontEndMissing(f"{name} is a stand-in (tests/htsat_standin.py): the Swin code under test "
                                       "must not use it")

    Missing.__name__ = name.rsplit(".", 1)[-1]
    return Missing


def _standin_module(name: str, members: tuple[str, ...]) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__doc__ = "stand-in, see tests/htsat_standin.py"
    for member in members:
        setattr(module, member, _missing(f"{name}.{member}"))
    return module


def available() -> str | None:
    """None when laion_clap is installed, else why not."""
    if importlib.util.find_spec("laion_clap") is None:
        return "laion_clap is not installed (make test installs it with --no-deps)"
    return None


def import_htsat():
    """laion_clap.clap_module.htsat, imported without the package's own __init__ and audio front end."""
    if "laion_clap.clap_module.htsat" in sys.modules:
        return sys.modules["laion_clap.clap_module.htsat"]
    root = os.path.dirname(importlib.util.find_spec("laion_clap").origin)
    for name, path in (("laion_clap", root), ("laion_clap.clap_module", os.path.join(root, "clap_module"))):
        if name not in sys.modules:
            package = types.ModuleType(name)
            package.__path__ = [path]
            package.__spec__ = importlib.machinery.ModuleSpec(name, None, is_package=True)  # find_spec still answers
            package.__spec__.submodule_search_locations = [path]
            sys.modules[name] = package
    stand_ins = {
        "torchlibrosa": (),
        "torchlibrosa.stft": ("Spectrogram", "LogmelFilterBank"),
        "torchlibrosa.augmentation": ("SpecAugmentation",),
    }
    if "h5py" not in sys.modules and importlib.util.find_spec("h5py") is None:
        stand_ins["h5py"] = ("File",)
    for name, members in stand_ins.items():
        sys.modules.setdefault(name, _standin_module(name, members))
    return importlib.import_module("laion_clap.clap_module.htsat")
