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
import math

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
                f"ring; use 0..{self.bits // 2 - 4}"
            )

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.uint64 if self.bits == 64 else np.uint32)

    @property
    def signed_dtype(self) -> np.dtype:
        return np.dtype(np.int64 if self.bits == 64 else np.int32)

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


def encode(ring: Ring, x, scale: int, *, saturate: bool = True):
    """Encode a real or integer array as ring elements at ``scale`` fractional bits.

    Booleans and integers are exact (at any scale). Floats are rounded to nearest. With
    ``saturate``, floats too large for the ring at all (``finfo.min`` masks, ``±inf``) become
    ``±ring.saturation_bound(scale)``, far enough from the ring's edge that sums of them
    cannot wrap; representable values are never altered. NaN encodes as
    0. Callers that must not saturate (secret inputs) check the range first with
    :func:`check_range`.

    Concrete values (inputs, constants) are encoded with numpy, which compiles nothing: a
    model's first call encodes dozens of shapes. Traced values are encoded with JAX.
    """
    xp = jnp if isinstance(x, jax.core.Tracer) else np
    x = xp.asarray(x)
    if x.dtype == np.bool_ or np.issubdtype(x.dtype, np.integer):
        encoded = _as_ring(xp, ring, x)
        if scale:
            encoded = encoded << xp.asarray(scale, ring.dtype)
        return np.asarray(encoded) if xp is np else encoded
    limit = ring.max_abs(scale)
    wide = xp.nan_to_num(x.astype(np.float64), nan=0.0, posinf=limit, neginf=-limit)
    if saturate:
        bound = ring.saturation_bound(scale)
        wide = xp.where(xp.abs(wide) >= limit, xp.sign(wide) * bound, wide)
    top = 2.0 ** (ring.bits - 1)
    wide = xp.clip(wide * 2.0**scale, -top, min(top - 1, np.nextafter(top, 0.0)))
    return _as_ring(xp, ring, xp.round(wide))


def _as_ring(xp, ring: Ring, values):
    """Integer-valued ``values`` as ring elements (two's complement), with numpy or JAX."""
    signed = values.astype(ring.signed_dtype)
    return np.asarray(signed).view(ring.dtype) if xp is np else from_signed(ring, signed)


@functools.partial(jax.jit, static_argnums=(0, 2, 3))
def decode(ring: Ring, x: jax.Array, scale: int, dtype) -> jax.Array:
    """Decode ring elements at ``scale`` fractional bits into an array of ``dtype``."""
    signed = to_signed(ring, x)
    if dtype == np.bool_:
        return signed != 0
    if np.issubdtype(dtype, np.integer):
        return (signed >> scale if scale else signed).astype(dtype)
    return (signed.astype(jnp.float64) * 2.0**-scale).astype(dtype)


def check_range(ring: Ring, x, scale: int) -> None:
    """Raise ``OverflowError`` if a concrete array cannot be encoded without wrapping."""
    x = np.asarray(x)
    if x.size == 0 or x.dtype == np.bool_:
        return
    # one pass: NaN and inf carry through to the peak (integers are widened: |int64 min|)
    peak = float(np.max(np.abs(x if np.issubdtype(x.dtype, np.floating) else x.astype(np.float64))))
    if not math.isfinite(peak):
        raise OverflowError("input holds inf or NaN, which no ring element represents")
    if peak >= ring.max_abs(scale):
        raise OverflowError(
            f"input magnitude {peak:.3g} does not fit a {ring.bits}-bit ring with {scale} "
            f"fractional bits (limit {ring.max_abs(scale):.3g})"
        )


def shift_amount(bits, like):
    """``bits`` as a shift of ``like``'s elements: a Python int as it is, an array (a shift
    passed to a compiled kernel at run time, so one kernel serves every amount) in ``like``'s
    dtype, as JAX's shifts need."""
    return bits if isinstance(bits, int) else jnp.asarray(bits).astype(like.dtype)


def power_of_two(ring: Ring, exponent) -> jax.Array:
    """``2^exponent`` as a ring element (``exponent`` an int or an integer array)."""
    one = jnp.asarray(1, ring.dtype)
    return one << shift_amount(exponent, one)


@functools.partial(jax.jit, static_argnums=(0,))
def arshift(ring: Ring, x: jax.Array, bits) -> jax.Array:
    """Arithmetic (sign-preserving) right shift of ring elements: floor(x / 2^bits)."""
    signed = to_signed(ring, x)
    return from_signed(ring, signed >> shift_amount(bits, signed))


def msb(ring: Ring, x: jax.Array) -> jax.Array:
    """Most significant bit of each ring element, as 0/1 ring elements."""
    return x >> (ring.bits - 1)


# -- exact ring matmul ----------------------------------------------------------------------
# XLA on CPU multiplies uint64 (and uint32) matrices with a naive loop, ~80x slower than a
# float GEMM, while int32 GEMMs are fast and wrap modulo 2^32. So the 32-bit ring runs as an
# int32 GEMM, and the 64-bit ring splits each element into three signed limbs of 21, 22, 21 bits
#     x = d0 + d1 2^21 + d2 2^43  (mod 2^64),   |d0|, |d2| <= 2^20, |d1| <= 2^21,
# so that  x y = P00 + 2^21 (P01 + P10) + 2^42 P11 + 2^43 (P02 + P20)  (mod 2^64): the pairs
# P12, P21, P22 sit at shifts >= 64 and vanish. P01 + P10 = (d0 + d1)(e0 + e1) - P00 - P11
# (Karatsuba), so five float64 GEMMs of limbs suffice. Every limb product is an integer of
# magnitude <= (3 * 2^20)^2 = 9 * 2^40, so a sum of at most _MAX_TERMS of them, and every
# partial sum in any order, is an integer <= 2^53: float64 computes it exactly. Longer
# contractions are cut into chunks whose exact results are added in uint64.
_SHIFTS = (0, 21, 43)
_WIDTHS = (21, 22, 21)
_MAX_TERMS = 2**53 // (9 * 2**40)  # 910
# The limb path costs ~10 ns per input element (limb extraction) plus ~0.25 ns per
# multiply-add; the integer loop ~2.4 ns per multiply-add (measured, CPU). So the integer loop
# stays for small products and for thin ones (matrix-vector), where m n / (m + n) is small.
_MIN_FLOAT_MACS = 2**18
_MIN_FLOAT_WIDTH = 8


def _limbs(x: jax.Array) -> list[jax.Array]:
    """Signed limbs of uint64 ``x`` as exact float64 arrays (see the comment above)."""
    bias = sum(1 << (s + w - 1) for s, w in zip(_SHIFTS, _WIDTHS))  # 2^20 + 2^42 + 2^63
    u = x + np.uint64(bias)
    # Through int64: XLA on CPU converts uint64 to float64 ~20x slower (measured).
    return [
        ((u >> s) & (2**w - 1)).astype(jnp.int64).astype(jnp.float64) - 2.0 ** (w - 1)
        for s, w in zip(_SHIFTS, _WIDTHS)
    ]


def _limb_product(op, x: jax.Array, y: jax.Array) -> jax.Array:
    """Exact uint64 value of the bilinear ``op`` on uint64 arrays, via float64 ``op`` on limbs.

    ``op`` must sum at most ``_MAX_TERMS`` products into each output element.
    """
    a0, a1, a2 = _limbs(x)
    b0, b1, b2 = _limbs(y)

    def exact(a, b):  # an integer of magnitude <= 2^53, converted without rounding
        return op(a, b).astype(jnp.int64).astype(jnp.uint64)

    p00, p11 = exact(a0, b0), exact(a1, b1)
    mid = exact(a0 + a1, b0 + b1) - p00 - p11
    top = exact(a0, b2) + exact(a2, b0)
    return p00 + (mid << 21) + (p11 << 42) + (top << 43)


def _as_int32(op, x: jax.Array, y: jax.Array) -> jax.Array:
    """Run ``op`` on uint32 arrays as int32, whose wrapping GEMM XLA runs fast."""
    as_signed = functools.partial(jax.lax.bitcast_convert_type, new_dtype=jnp.int32)
    out = op(as_signed(x), as_signed(y), preferred_element_type=jnp.int32)
    return jax.lax.bitcast_convert_type(out, jnp.uint32)


def dot_general(x: jax.Array, y: jax.Array, dimension_numbers) -> jax.Array:
    """Exact ring ``jax.lax.dot_general``: products and sums wrap modulo 2^k."""
    if x.dtype == np.uint32:
        return _as_int32(
            functools.partial(jax.lax.dot_general, dimension_numbers=dimension_numbers), x, y
        )
    (lc, rc), (lb, rb) = dimension_numbers
    lf = [d for d in range(x.ndim) if d not in (*lc, *lb)]
    rf = [d for d in range(y.ndim) if d not in (*rc, *rb)]
    b, m, k, n = (
        math.prod(x.shape[d] for d in lb),
        math.prod(x.shape[d] for d in lf),
        math.prod(x.shape[d] for d in lc),
        math.prod(y.shape[d] for d in rf),
    )
    if b * m * k * n < _MIN_FLOAT_MACS or m * n < _MIN_FLOAT_WIDTH * (m + n):
        return jax.lax.dot_general(x, y, dimension_numbers, preferred_element_type=x.dtype)
    # Canonical form: x as (batch, chunks, m, size), y as (batch, chunks, size, n).
    chunks = max(1, -(-k // _MAX_TERMS))
    size = -(-k // chunks)
    pad = chunks * size - k
    xs = jnp.transpose(x, (*lb, *lf, *lc)).reshape(b, m, k)
    ys = jnp.transpose(y, (*rb, *rc, *rf)).reshape(b, k, n)
    if pad:
        xs = jnp.pad(xs, ((0, 0), (0, 0), (0, pad)))
        ys = jnp.pad(ys, ((0, 0), (0, pad), (0, 0)))
    xs = xs.reshape(b, m, chunks, size).transpose(0, 2, 1, 3)
    ys = ys.reshape(b, chunks, size, n)
    op = functools.partial(
        jax.lax.dot_general,
        dimension_numbers=(((3,), (2,)), ((0, 1), (0, 1))),
        precision=jax.lax.Precision.HIGHEST,
    )
    out = _limb_product(op, xs, ys).sum(axis=1, dtype=jnp.uint64)
    shape = [x.shape[d] for d in (*lb, *lf)] + [y.shape[d] for d in rf]
    return out.reshape(shape)


def conv_general_dilated(x: jax.Array, y: jax.Array, **conv_params) -> jax.Array:
    """Exact ring ``jax.lax.conv_general_dilated``; products and sums wrap modulo 2^k.

    ``conv_params`` are lax's keyword parameters except ``precision`` and
    ``preferred_element_type``. Runs as float64 convolutions of limbs (uint32 rings widen to
    uint64 and truncate back) when each output sums at most ``_MAX_TERMS`` products, else as
    XLA's slow integer convolution.
    """
    dn = jax.lax.conv_dimension_numbers(x.shape, y.shape, conv_params.get("dimension_numbers"))
    terms = math.prod(y.shape[d] for d in dn.rhs_spec[1:])  # input features x window
    if terms > _MAX_TERMS:
        return jax.lax.conv_general_dilated(x, y, **conv_params, preferred_element_type=x.dtype)
    op = functools.partial(
        jax.lax.conv_general_dilated, **conv_params, precision=jax.lax.Precision.HIGHEST
    )
    out = _limb_product(op, x.astype(jnp.uint64), y.astype(jnp.uint64))
    return out.astype(x.dtype)
