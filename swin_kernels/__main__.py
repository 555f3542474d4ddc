"""python -m swin_kernels: the installation's self-check (swin_kernels/selfcheck.py)."""
from .selfcheck import main

raise SystemExit(main())
