"""GroundingDINO's Swin backbone module (its copy of the official detection Swin), loaded from its file.

The package's ``__init__`` imports the whole detector (pycocotools, supervision, a compiled extension), which the
Swin backbone does not use; the coverage table and the tests load the one file instead.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import warnings

MODULE_NAME = "groundingdino.models.GroundingDINO.backbone.swin_transformer"


def backbone_module():
    """The backbone module (cached in sys.modules), or None when groundingdino is not installed."""
    if MODULE_NAME not in sys.modules:
        spec = importlib.util.find_spec("groundingdino")
        if spec is None:
            return None
        path = os.path.join(os.path.dirname(spec.origin), "models", "GroundingDINO", "backbone", "swin_transformer.py")
        module_spec = importlib.util.spec_from_file_location(MODULE_NAME, path)
        module = importlib.util.module_from_spec(module_spec)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            module_spec.loader.exec_module(module)
        sys.modules[MODULE_NAME] = module
    return sys.modules[MODULE_NAME]
