"""The three kinds of value a secure program handles, and how each is encoded in the ring.

- :class:`Public`: known to every party; computed in the clear, in the user's own dtype.
- :class:`Private`: known to one party, which computes on it locally in the clear.
- :class:`Secret`: shared among the parties; only protocol operations touch it.

A secret of a floating dtype is held at ``frac_bits`` fractional bits, one of an integer or
boolean dtype at scale 0.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from secjax.ring import Ring


@dataclasses.dataclass(frozen=True)
class _InTheClear:
    """A value some party holds as a plain array."""

    value: jax.Array

    @property
    def shape(self):
        return np.shape(self.value)

    @property
    def dtype(self):
        return np.dtype(self.value.dtype)


@dataclasses.dataclass(frozen=True)
class Public(_InTheClear):
    """A value every party knows."""


@dataclasses.dataclass(frozen=True)
class Private(_InTheClear):
    """A value only party ``owner`` knows."""

    owner: int


@dataclasses.dataclass(frozen=True)
class Secret:
    """A secret-shared value: protocol ``shares`` of a logical array of ``shape``/``dtype``."""

    shares: jax.Array
    shape: tuple[int, ...]
    dtype: np.dtype


class DeferredSecret(Secret):
    """A secret whose shares are computed on first use. Products with a public factor,
    positive powers and sums of deferred values are deferred this way, so a value that only
    pattern rules look through (the ``-x / sqrt 2`` inside an erf GeLU, the
    ``c (x + 0.044715 x^3)`` inside a tanh GeLU, whose rules take x itself) costs nothing."""

    def __init__(self, compute, shape, dtype):
        object.__setattr__(self, "shape", tuple(shape))
        object.__setattr__(self, "dtype", np.dtype(dtype))
        object.__setattr__(self, "_compute", compute)
        object.__setattr__(self, "_shares", None)

    @property
    def shares(self) -> jax.Array:
        if self._shares is None:
            object.__setattr__(self, "_shares", self._compute())
            object.__setattr__(self, "_compute", None)
        return self._shares

    @property
    def pending(self) -> bool:
        """Whether the shares are still to be computed."""
        return self._shares is None


Value = Public | Private | Secret


def is_float(dtype) -> bool:
    return bool(jnp.issubdtype(dtype, jnp.floating))


def scale_of(ring: Ring, dtype) -> int:
    """Fractional bits at which a secret of ``dtype`` is held."""
    return ring.frac_bits if is_float(dtype) else 0


def encodable(dtype) -> bool:
    """Whether values of ``dtype`` have a ring encoding (real and integer, not complex)."""
    return bool(
        jnp.issubdtype(dtype, jnp.bool_) or jnp.issubdtype(dtype, jnp.integer) or is_float(dtype)
    )


def is_marker(x) -> bool:
    """Whether ``x`` is a ``public`` or ``private`` marker around a user's array."""
    return isinstance(x, (Public, Private))


def dtype_of(raw) -> np.dtype:
    """The dtype of an argument as the user's JAX sees it: an array's own, and a Python
    scalar's as ``jax.numpy`` makes it (float32 unless the user enabled x64)."""
    if hasattr(raw, "dtype"):
        return np.dtype(raw.dtype)
    return np.dtype(jnp.asarray(raw).dtype)


def argument_name(path) -> str:
    """``args[0]['dense']['kernel']`` from a pytree key path of ``(args, kwargs)``."""
    (top, *rest) = path
    head = "args" if top.idx == 0 else "kwargs"
    return head + jax.tree_util.keystr(tuple(rest))
