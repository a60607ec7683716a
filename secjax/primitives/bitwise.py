"""Rules for logic and bitwise operations: ``and``, ``or``, ``xor``, ``not`` on secret
booleans and integers, ``shift_left``, ``shift_right_logical``, ``shift_right_arithmetic``,
``population_count``, and ``jnp.signbit``'s ``bitcast_convert_type`` pattern.

Booleans are 0/1 ring values: a and b = ab, a or b = a + b - ab, a xor b = a + b - 2ab,
not a = 1 - a (one product or none).

Integers are decomposed into bits. A w-bit integer sits in the ring in two's complement
(signed) or as its value (unsigned), so its bit i is the ring value's bit i, which a left
shift by ring_bits - 1 - i (local: a product by a public power of two) moves to the sign
bit: bit i = msb(x << (ring_bits - 1 - i)). All the bits an operation needs go through ONE
comparison call (w comparisons per element for a full decomposition, each exact for every
ring value). Bitwise results are recomposed locally as sum_i bit_i 2^i, bit w - 1
weighing -2^(w - 1) for signed dtypes; ``and`` / ``or`` / ``xor`` of two secrets add one
product call (one product per bit), with a public operand they are local in the bits.
Shifts by public amounts recompose the bits at moved positions (amounts of w or more give
0, or the sign for arithmetic right shifts, as XLA does); shifts by secret amounts are
refused. ``not`` of an integer is -1 - x (signed) or 2^w - 1 - x (unsigned): local.

``jnp.signbit(x)`` of a secret float is ``shift_right_arithmetic(bitcast_convert_type(x),
w - 1)``: the ring has no IEEE bits to reinterpret, but this pattern is msb(x) (as -1/0):
one comparison (a ring has no -0.0: it encodes as 0, whose sign bit is 0). Any other use
of a bitcast of a secret float is refused when it is used.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from secjax.primitives import register
from secjax.primitives.bilinear import apply_bilinear
from secjax.primitives.compare import broadcast_operand
from secjax.protocols.base import MULTIPLY, Local
from secjax.values import Public


def _is_bool(dtype) -> bool:
    return jnp.issubdtype(dtype, jnp.bool_)


def _width(ctx, dtype) -> int:
    w = np.dtype(dtype).itemsize * 8
    if w > ctx.ring.bits:
        raise ctx.unsupported(f"a {w}-bit integer does not fit the {ctx.ring.bits}-bit ring")
    return w


def _signed(dtype) -> bool:
    return jnp.issubdtype(dtype, jnp.signedinteger)


# -- bits ---------------------------------------------------------------------------------------


def _shifted_rows(x, *, amounts):
    """``x << a`` for each ``a`` of ``amounts``, stacked on a new leading axis."""
    return jnp.stack([x << jnp.asarray(a, x.dtype) for a in amounts])


def _weighted(bits, weights):
    return jnp.sum(bits * weights, axis=0, dtype=bits.dtype)


def bits_of(ctx, shares, positions: tuple) -> object:
    """0/1 shares of the bits ``positions`` of the ring values ``shares``, stacked on a new
    leading axis: ONE comparison call."""
    protocol = ctx.protocol
    k = ctx.ring.bits
    rows = protocol.local(
        Local.of(_shifted_rows, amounts=tuple(k - 1 - i for i in positions)),
        shares,
        over=protocol.logical_shape(shares),
    )
    return protocol.msb(rows)


def _recompose(ctx, bits, weights):
    """sum_i bits[i] * weights[i] (weights: public ring integers, one row per bit)."""
    return ctx.protocol.local(Local(_weighted), bits, weights, shared=(True, False))


def _place_weights(ctx, w: int, signed: bool) -> np.ndarray:
    """The ring weight of each bit position of a w-bit integer (two's complement)."""
    weights = [1 << t for t in range(w)]
    if signed:
        weights[-1] = -(1 << (w - 1))
    return np.asarray([v % (1 << ctx.ring.bits) for v in weights], dtype=object)


def _ring_array(ctx, values) -> np.ndarray:
    return np.asarray(
        np.asarray(values, dtype=object) % (1 << ctx.ring.bits), dtype=np.uint64
    ).astype(ctx.ring.dtype)


def _public_bits(value, w: int, shape) -> np.ndarray:
    """The bits 0..w-1 of a public integer array (two's complement), stacked first."""
    v = np.broadcast_to(np.asarray(value).astype(np.int64), shape).astype(np.uint64)
    return np.stack([(v >> np.uint64(i)) & np.uint64(1) for i in range(w)])


# -- logic --------------------------------------------------------------------------------------


@register("and", "or", "xor")
def logic_rule(ctx, a, b, **_):
    """Booleans: ab, a + b - ab, a + b - 2ab. Integers: the same on every bit."""
    aval = ctx.out_avals[0]
    name = ctx.primitive
    if _is_bool(aval.dtype):
        product = apply_bilinear(ctx, MULTIPLY, a, b).shares
        if name == "and":
            return ctx.make(product, aval)
        if name == "xor":
            product = ctx.protocol.add(product, product)
        total = ctx.protocol.add(
            broadcast_operand(ctx, a, aval.shape), broadcast_operand(ctx, b, aval.shape)
        )
        return ctx.make(ctx.protocol.sub(total, product), aval)
    return ctx.make(_integer_logic(ctx, name, a, b, aval), aval)


def _integer_logic(ctx, name, a, b, aval):
    protocol = ctx.protocol
    w = _width(ctx, aval.dtype)
    shape = tuple(aval.shape)
    positions = tuple(range(w))
    secrets = [v for v in (a, b) if not isinstance(v, Public)]
    if len(secrets) == 2:
        both = bits_of(
            ctx,
            protocol.stack(broadcast_operand(ctx, a, shape), broadcast_operand(ctx, b, shape)),
            positions,
        )  # (w, 2, ...)
        x = protocol.local(Local.of(_index_second, i=0), both)
        y = protocol.local(Local.of(_index_second, i=1), both)
        product = protocol.bilinear(MULTIPLY, x, y)
    else:
        public = a if isinstance(a, Public) else b
        x = bits_of(ctx, broadcast_operand(ctx, secrets[0], shape), positions)
        c = _public_bits(public.value, w, shape).astype(ctx.ring.dtype)
        product = protocol.bilinear_public(MULTIPLY, x, c)
        y = protocol.from_public(c)
    if name == "and":
        bits = product
    else:
        total = protocol.add(x, y)
        bits = protocol.sub(total, protocol.add(product, product) if name == "xor" else product)
    weights = _place_weights(ctx, w, _signed(aval.dtype))
    weights = _ring_array(ctx, weights.reshape((w,) + (1,) * len(shape)))
    return _recompose(ctx, bits, np.broadcast_to(weights, (w,) + shape))


def _index_second(x, *, i):
    return x[:, i]


@register("not")
def not_rule(ctx, a, **_):
    """not of a boolean: 1 - a; of an integer: -1 - a or 2^w - 1 - a (local)."""
    aval = ctx.out_avals[0]
    protocol = ctx.protocol
    shares = ctx.secret(a).shares
    if _is_bool(aval.dtype):
        return ctx.make(protocol.sub(ctx.ones(aval.shape), shares), aval)
    w = _width(ctx, aval.dtype)
    top = -1 if _signed(aval.dtype) else (1 << w) - 1
    constant = _ring_array(ctx, np.full(tuple(aval.shape), top, dtype=object))
    return ctx.make(protocol.sub(protocol.from_public(constant), shares), aval)


# -- shifts and counts ---------------------------------------------------------------------------


def _shift_weights(ctx, name: str, amounts, w: int, signed: bool, shape) -> np.ndarray:
    """Per input bit i and element, its weight in the shifted result: (w, *shape)."""
    s = np.broadcast_to(np.asarray(amounts, dtype=np.int64), shape)
    place = _place_weights(ctx, w, signed)
    weights = np.zeros((w,) + tuple(shape), dtype=object)
    for t in range(w):  # output bit t takes input bit src
        if name == "shift_left":
            src, valid = t - s, (t - s >= 0) & (s < w)
        elif name == "shift_right_logical":
            src, valid = t + s, (t + s < w) & (s >= 0)
        else:  # arithmetic: the sign bit fills from the top
            src, valid = np.minimum(t + np.maximum(s, 0), w - 1), np.ones(shape, bool)
        for i in range(w):
            weights[i] = weights[i] + np.where(valid & (src == i), place[t], 0)
    return _ring_array(ctx, weights)


def _signbit_source(ctx):
    """For ``shift_right_arithmetic(bitcast_convert_type(x), w - 1)`` of a float x: x."""
    found = ctx.producer(0)
    if found is None or found[0].primitive.name != "bitcast_convert_type":
        return None
    (source,) = found[1]
    return source if jnp.issubdtype(source.dtype, jnp.floating) else None


@register("shift_left", "shift_right_logical", "shift_right_arithmetic")
def shift_rule(ctx, x, amount, **_):
    aval = ctx.out_avals[0]
    if not isinstance(amount, Public):
        raise ctx.unsupported(
            "a shift by a non-public amount (secjax shifts secret integers by public amounts only)"
        )
    w = _width(ctx, aval.dtype)
    source = _signbit_source(ctx)
    if ctx.primitive == "shift_right_arithmetic" and source is not None:
        if np.all(np.asarray(amount.value) == w - 1):
            sign = ctx.protocol.msb(ctx.secret(source).shares)  # -1 where x < 0
            return ctx.make(ctx.protocol.neg(sign), aval)
    shape = tuple(aval.shape)
    weights = _shift_weights(ctx, ctx.primitive, amount.value, w, _signed(aval.dtype), shape)
    used = tuple(i for i in range(w) if np.any(weights[i] != 0))
    if not used:
        return Public(jnp.zeros(shape, aval.dtype))
    bits = bits_of(ctx, broadcast_operand(ctx, x, shape), used)
    return ctx.make(_recompose(ctx, bits, weights[list(used)]), aval)


@register("population_count")
def population_count_rule(ctx, x, **_):
    aval = ctx.out_avals[0]
    w = _width(ctx, aval.dtype)
    bits = bits_of(ctx, ctx.secret(x).shares, tuple(range(w)))
    ones = np.ones((w,) + tuple(aval.shape), ctx.ring.dtype)
    return ctx.make(_recompose(ctx, bits, ones), aval)


@register("bitcast_convert_type")
def bitcast_rule(ctx, x, *, new_dtype, **_):
    """Only ``jnp.signbit``'s use is computed (see the module docstring): the value is
    deferred and refused if anything else reads it."""
    error = ctx.unsupported(
        f"reinterpreting the bits of a secret {np.dtype(x.dtype)} as {np.dtype(new_dtype)}: "
        "fixed-point values have no IEEE bits (only jnp.signbit's pattern is computed)"
    )

    def refuse():
        raise error

    return ctx.deferred(refuse, ctx.out_avals[0])
