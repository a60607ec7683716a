"""The one module that reaches into JAX's private packages (``jax._src``).

Everything else in secjax uses JAX's public API and ``jax.extend``. What is needed from the
inside is named here, once, so that a JAX upgrade that moves it breaks one file.
"""

from __future__ import annotations

import sys

from jax._src import source_info_util
from jax._src.interpreters import partial_eval
from jax.extend.core import Primitive


def user_frames(traceback) -> list:
    """The frames of an equation's traceback that lie outside JAX, innermost first."""
    return list(source_info_util.user_frames(traceback))


def drop_dead_code(jaxpr):
    """``jaxpr`` without the equations no output needs (effectful ones are kept)."""
    return partial_eval.dce_jaxpr(jaxpr, [True] * len(jaxpr.outvars), instantiate=True)[0]


def primitive_names() -> frozenset[str]:
    """The names of every primitive defined by the JAX modules imported so far."""
    names = set()
    for name, module in list(sys.modules.items()):
        if module is None or not name.startswith("jax"):
            continue
        names.update(
            value.name for value in list(vars(module).values()) if isinstance(value, Primitive)
        )
    return frozenset(names)
