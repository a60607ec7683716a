"""Rules for exact division with remainder: ``div`` of secret integers (rounding toward
zero, as ``lax.div``; ``jnp.floor_divide`` and ``divmod`` build on it) and ``rem`` of
secret integers and floats (the sign of the dividend, as ``lax.rem``; ``jnp.mod``, ``fmod``
and ``remainder`` build on it).

Integers (w bits, in a ring of at least 2w bits): restoring long division of the
magnitudes |x| = q |y| + r. For i = w - 1 down to 0, bit i of q is [r >= |y| 2^i] and r
drops by that bit times |y| 2^i: w rounds of ONE comparison and ONE product (the product
is local when y is public, and a public y skips the positions where |y| 2^i > 2^(w-1)).
Then the signs: q (1 - 2 [x < 0 xor y < 0]) and r (1 - 2 [x < 0]) in one product call.
A zero divisor gives XLA's results, x / 0 = -1 and x % 0 = x (one equality test and one
product). Exact for every input. ``div`` and ``rem`` of the same operands (``jnp.floor_divide``,
``divmod`` and ``mod`` take both) share one long division.

Floats: rem(x, y) = sign(x) (|x| - q |y|) with q = floor(|x| / |y|): the quotient is
estimated through the reciprocal of |y| (exact for a public y) and a truncation, so it
may be off by one or two; r = |x| - q |y| is exact in the ring (q is an integer), and two
correction steps (each one comparison call for r < 0 and r >= |y| and one product) bring
r into [0, |y|). The result is then the exact remainder of the fixed-point encodings of
x and y while |x / y| stays within the reciprocal's accuracy (the quotient's error below
one unit: |x / y| < 2^12 at the default policy). Where x / y is within the encodings'
rounding (2^-18) of an integer, float's remainder and the encodings' can lie on the two
sides of the jump: they then differ by |y| (fmod(7.0, 0.7) is 1e-7 in float32, whose 0.7
is below 0.7, and 0.7000008 in the ring, whose 0.7 is above). y = 0 has no NaN in the
ring: its result is an unspecified finite value.
"""

from __future__ import annotations

import jax
import numpy as np

from secjax import ring as ring_ops
from secjax.primitives import register
from secjax.primitives.bilinear import apply_bilinear
from secjax.primitives.compare import broadcast_operand
from secjax.primitives.transcendental import reciprocal_value
from secjax.protocols.base import MULTIPLY
from secjax.values import Public, is_float


def _ring(ctx, values) -> np.ndarray:
    """Python or numpy integers as ring values (two's complement)."""
    values = np.asarray(values, dtype=object) % (1 << ctx.ring.bits)
    return np.asarray(values, dtype=np.uint64).astype(ctx.ring.dtype)


def _signs(ctx, shares):
    """(0/1 shares of [v < 0], shares of |v|) for each of ``shares`` (one shape), the
    comparisons in one call and the products in one call."""
    protocol = ctx.protocol
    stacked = protocol.stack(*shares)
    negative = protocol.msb(stacked)
    ones = ctx.ones(protocol.logical_shape(stacked))
    magnitude = protocol.bilinear(
        MULTIPLY, protocol.sub(ones, protocol.add(negative, negative)), stacked
    )
    n = len(shares)
    return (
        [protocol.index(negative, i) for i in range(n)],
        [protocol.index(magnitude, i) for i in range(n)],
    )


def integer_division(ctx, x, y, *, remainder: bool):
    """Shares of lax.div(x, y) (or lax.rem when ``remainder``) for integer x, y. The long
    division of one pair of operands runs once per evaluation, for div and rem alike."""
    key = ("long_division", id(x), id(y))
    if key not in ctx.memo:
        ctx.memo[key] = (x, y, _long_division(ctx, x, y))
    x_negative, y_negative, q, r = ctx.memo[key][2]
    protocol = ctx.protocol
    shape = tuple(ctx.out_avals[0].shape)
    ones = ctx.ones(shape)
    if remainder:
        sign = protocol.sub(ones, protocol.add(x_negative, x_negative))
        return protocol.bilinear(MULTIPLY, sign, r)
    both = protocol.bilinear(MULTIPLY, x_negative, y_negative)
    differ = protocol.sub(protocol.add(x_negative, y_negative), protocol.add(both, both))  # xor
    q = protocol.bilinear(MULTIPLY, protocol.sub(ones, protocol.add(differ, differ)), q)
    # x / 0 = -1: q + [y == 0] (-1 - q)
    if isinstance(y, Public):
        zero = (np.broadcast_to(np.asarray(y.value), shape) == 0).astype(np.int64)
        if not zero.any():
            return q
        return protocol.add(
            q,
            protocol.bilinear_public(
                MULTIPLY, protocol.sub(protocol.neg(ones), q), _ring(ctx, zero)
            ),
        )
    zero = protocol.eqz(broadcast_operand(ctx, y, shape))
    return protocol.add(q, protocol.bilinear(MULTIPLY, zero, protocol.sub(protocol.neg(ones), q)))


def _long_division(ctx, x, y):
    """([x < 0], [y < 0], |x| // |y|, |x| % |y|) as shares (module docstring)."""
    protocol = ctx.protocol
    aval = ctx.out_avals[0]
    shape = tuple(aval.shape)
    w = np.dtype(aval.dtype).itemsize * 8
    if 2 * w > ctx.ring.bits:
        raise ctx.unsupported(
            f"exact division of {w}-bit integers needs a ring of at least "
            f"{2 * w} bits (this one has {ctx.ring.bits})"
        )
    public_y = isinstance(y, Public)
    if public_y:
        yv = np.broadcast_to(np.asarray(y.value).astype(np.int64), shape)
        (x_negative,), (a,) = _signs(ctx, [broadcast_operand(ctx, x, shape)])
        y_negative = protocol.from_public(_ring(ctx, (yv < 0).astype(np.int64)))
        b_public = np.abs(yv).astype(object)
        top = max(int(b_public.max(initial=0)), 1).bit_length() - 1
        positions = range(max(w - 1 - top, 0), -1, -1)
    else:
        (x_negative, y_negative), (a, b) = _signs(
            ctx, [broadcast_operand(ctx, x, shape), broadcast_operand(ctx, y, shape)]
        )
        positions = range(w - 1, -1, -1)
    ones = ctx.ones(shape)
    r, q = a, None
    for i in positions:
        if public_y:
            shifted = _ring(ctx, b_public * (1 << i))
            take = protocol.sub(
                ones, protocol.msb(protocol.add_public(r, _ring(ctx, -(b_public * (1 << i)))))
            )
            r = protocol.sub(r, protocol.bilinear_public(MULTIPLY, take, shifted))
        else:
            shifted = protocol.scale_up(b, i) if i else b
            take = protocol.sub(ones, protocol.msb(protocol.sub(r, shifted)))
            r = protocol.sub(r, protocol.bilinear(MULTIPLY, take, shifted))
        bit = protocol.scale_up(take, i) if i else take
        q = bit if q is None else protocol.add(q, bit)
    return x_negative, y_negative, q, r


def _float_remainder(ctx, x, y):
    protocol = ctx.protocol
    aval = ctx.out_avals[0]
    shape = tuple(aval.shape)
    d = ctx.scale(aval.dtype)
    float_aval = jax.ShapeDtypeStruct(shape, aval.dtype)
    if isinstance(y, Public):
        yv = np.broadcast_to(np.asarray(y.value, dtype=np.float64), shape)
        (x_negative,), (a,) = _signs(ctx, [broadcast_operand(ctx, x, shape)])
        b_enc = ring_ops.encode(ctx.ring, np.abs(yv), d)
        b_float = np.asarray(b_enc).astype(np.float64) / 2.0**d  # |y| as encoded
        with np.errstate(divide="ignore"):
            inverse = Public(
                np.where(b_float > 0, 1.0 / np.maximum(b_float, 2.0**-d), 0.0).astype(np.float32)
            )
        t = apply_bilinear(ctx, MULTIPLY, ctx.make(a, float_aval), inverse, float_aval)

        def times_b(q):
            return protocol.bilinear_public(MULTIPLY, q, b_enc)

        b_shares = protocol.from_public(b_enc)
    else:
        (x_negative, _), (a, b_shares) = _signs(
            ctx, [broadcast_operand(ctx, x, shape), broadcast_operand(ctx, y, shape)]
        )
        inverse = reciprocal_value(ctx, ctx.make(b_shares, float_aval), float_aval, positive=True)
        t = apply_bilinear(ctx, MULTIPLY, ctx.make(a, float_aval), inverse, float_aval)

        def times_b(q):
            return protocol.bilinear(MULTIPLY, q, b_shares)

    q = protocol.trunc(t.shares, d)  # floor(|x| / |y|), off by a little
    r = protocol.sub(a, times_b(q))  # exact: q is an integer
    ones = ctx.ones(shape)
    for _ in range(2):
        tests = protocol.msb(protocol.stack(r, protocol.sub(r, b_shares)))
        below, above = protocol.index(tests, 0), protocol.sub(ones, protocol.index(tests, 1))
        r = protocol.add(r, times_b(protocol.sub(below, above)))  # r + [r < 0] |y| - [r >= |y|] |y|
    sign = protocol.sub(ones, protocol.add(x_negative, x_negative))
    return protocol.bilinear(MULTIPLY, sign, r)


@register("rem")
def rem_rule(ctx, x, y, **_):
    aval = ctx.out_avals[0]
    if is_float(aval.dtype):
        return ctx.make(_float_remainder(ctx, x, y), aval)
    return ctx.make(integer_division(ctx, x, y, remainder=True), aval)
