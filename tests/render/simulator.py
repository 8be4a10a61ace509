"""Counting numba-cuda kernel launches in the simulator scripts of the fused-op tests.

Imported by the scripts that tests/render/test_*_fused.py run under
NUMBA_ENABLE_CUDASIM=1 (the `run_simulated` fixture; their sys.path holds
this folder).
"""

from __future__ import annotations

from types import ModuleType

import numpy as np


class _Counted:
    """A kernel stand-in that records each launch before running the kernel."""

    def __init__(self, name: str, kernel: object, launches: list) -> None:
        self.name, self.kernel, self.launches = name, kernel, launches

    def __getitem__(self, config: object):
        def run(*args: object) -> object:
            arrays = sum(isinstance(a, np.ndarray) for a in args)
            self.launches.append((self.name, arrays, len(args) - arrays))
            return self.kernel[config](*args)

        return run


def count_launches(module: ModuleType) -> list[tuple[str, int, int]]:
    """Wrap every `*_kernel` of `module`; returns the list that each launch
    appends (kernel name, array arguments, scalar arguments) to."""
    launches: list[tuple[str, int, int]] = []
    for name in [n for n in dir(module) if n.endswith("_kernel")]:
        setattr(module, name, _Counted(name, getattr(module, name), launches))
    return launches
