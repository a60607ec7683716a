"""MPC-friendly network functions (GeLU, SiLU, softmax, norms) and the overrides that put
them in place of the named functions they replace in a jaxpr."""
from __future__ import annotations

from typing import Callable

# Rules keyed by the name of the ``jit`` they replace as a whole (e.g. "silu").
OVERRIDES: dict[str, Callable] = {}
