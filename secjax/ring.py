"""Arithmetic on the ring Z_2^k and fixed-point encoding into it.

Ring elements are unsigned JAX arrays (``uint64`` for k = 64, ``uint32`` for k = 32) whose
native wrap-around arithmetic *is* arithmetic modulo 2^k. A ring element stands for the signed
integer in [-2^(k-1), 2^(k-1)); a fixed-point number x with f fractional bits is the ring
element round(x * 2^f).

Every function here needs 64-bit types enabled (``jax.enable_x64(True)``); secjax enters that
mode around its own work only. The eager entry points are jit-compiled (cached by shape), so
encoding many inputs does not pay for op-by-op dispatch.
"""
from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

# Public constants too large for the ring are saturated this many bits below its top, so that
# adding up to 2^HEADROOM_BITS of them (attention masks are added, then max-subtracted) can
# never wrap around the ring.
HEADROOM_BITS = 10


@dataclasses.dataclass(frozen=True)
class Ring:
    """The ring Z_2^bits with fixed-point numbers of ``frac_bits`` fractional bits."""

    bits: int = 64
    frac_bits: int = 18

    def __post_init__(self):
        if self.bits not in (32, 64):
            raise ValueError(f"ring_bits must be 32 or 64, got {self.bits}")
        if not 0 <= self.frac_bits <= self.bits // 2 - 4:
            raise ValueError(
                f"frac_bits={self.frac_bits} leaves no room for products in a {self.bits}-bit "
                f"ring; use 0..{self.bits // 2 - 4}")

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.uint64 if self.bits == 64 else np.uint32)

    @property
    def signed_dtype(self) -> np.dtype:
        return np.dtype(np.int64 if self.bits == 64 else np.int32)

    @property
    def nbytes(self) -> int:
        """Bytes that one ring element takes on the wire."""
        return self.bits // 8

    def max_abs(self, scale: int) -> float:
        """Largest magnitude a value encoded at ``scale`` may have without wrapping."""
        return float(2.0 ** (self.bits - 1 - scale))

    def saturation_bound(self, scale: int) -> float:
        """Magnitude to which public constants too large for the ring are clipped."""
        return float(2.0 ** (self.bits - 1 - scale - HEADROOM_BITS))


def to_signed(ring: Ring, x: jax.Array) -> jax.Array:
    """Reinterpret ring elements as two's-complement signed integers."""
    return jax.lax.bitcast_convert_type(x, ring.signed_dtype)


def from_signed(ring: Ring, x: jax.Array) -> jax.Array:
    """Reinterpret signed integers as ring elements."""
    return jax.lax.bitcast_convert_type(x.astype(ring.signed_dtype), ring.dtype)


@functools.partial(jax.jit, static_argnums=(0, 2), static_argnames=("saturate",))
def encode(ring: Ring, x, scale: int, *, saturate: bool = True) -> jax.Array:
    """Encode a real or integer array as ring elements at ``scale`` fractional bits.

    Booleans and integers are exact (at any scale). Floats are rounded to nearest. With
    ``saturate``, floats too large for the ring at all (``finfo.min`` masks, ``±inf``) become
    ``±ring.saturation_bound(scale)``, far enough from the ring's edge that sums of them
    cannot wrap; representable values are never altered. NaN encodes as
    0. Callers that must not saturate (secret inputs) check the range first with
    :func:`check_range`.
    """
    x = jnp.asarray(x)
    if jnp.issubdtype(x.dtype, jnp.bool_) or jnp.issubdtype(x.dtype, jnp.integer):
        signed = x.astype(ring.signed_dtype)
        return from_signed(ring, signed) << scale if scale else from_signed(ring, signed)
    limit = ring.max_abs(scale)
    wide = jnp.nan_to_num(x.astype(jnp.float64), nan=0.0, posinf=limit, neginf=-limit)
    if saturate:
        bound = ring.saturation_bound(scale)
        wide = jnp.where(jnp.abs(wide) >= limit, jnp.sign(wide) * bound, wide)
    wide = jnp.clip(wide * 2.0 ** scale, -(2.0 ** (ring.bits - 1)), 2.0 ** (ring.bits - 1) - 1)
    return from_signed(ring, jnp.round(wide).astype(ring.signed_dtype))


@functools.partial(jax.jit, static_argnums=(0, 2, 3))
def decode(ring: Ring, x: jax.Array, scale: int, dtype) -> jax.Array:
    """Decode ring elements at ``scale`` fractional bits into an array of ``dtype``."""
    signed = to_signed(ring, x)
    if dtype == np.bool_:
        return signed != 0
    if np.issubdtype(dtype, np.integer):
        return (signed >> scale if scale else signed).astype(dtype)
    return (signed.astype(jnp.float64) * 2.0 ** -scale).astype(dtype)


def check_range(ring: Ring, x, scale: int) -> None:
    """Raise ``OverflowError`` if a concrete array cannot be encoded without wrapping."""
    x = np.asarray(x)
    if x.size == 0 or x.dtype == np.bool_:
        return
    if np.issubdtype(x.dtype, np.floating) and not np.all(np.isfinite(x)):
        raise OverflowError("input holds inf or NaN, which no ring element represents")
    peak = float(np.max(np.abs(x.astype(np.float64))))
    if peak >= ring.max_abs(scale):
        raise OverflowError(
            f"input magnitude {peak:.3g} does not fit a {ring.bits}-bit ring with {scale} "
            f"fractional bits (limit {ring.max_abs(scale):.3g})")


@functools.partial(jax.jit, static_argnums=(0, 2))
def arshift(ring: Ring, x: jax.Array, bits: int) -> jax.Array:
    """Arithmetic (sign-preserving) right shift of ring elements: floor(x / 2^bits)."""
    return from_signed(ring, to_signed(ring, x) >> bits)


def msb(ring: Ring, x: jax.Array) -> jax.Array:
    """Most significant bit of each ring element, as 0/1 ring elements."""
    return x >> (ring.bits - 1)


def dot_general(x: jax.Array, y: jax.Array, dimension_numbers) -> jax.Array:
    """Exact ring dot_general: integer products and sums wrap modulo 2^k."""
    return jax.lax.dot_general(x, y, dimension_numbers, preferred_element_type=x.dtype)
