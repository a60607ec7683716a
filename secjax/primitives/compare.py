"""Rules for comparisons, max/min, abs/sign, clamp and max/min/argmax reductions (logic:
:mod:`secjax.primitives.bitwise`).

Every comparison is ``protocol.msb`` of a difference (1 where it is negative), exact while
the difference of the two operands, at their fixed-point scale s, stays below
2^(ring_bits - 1 - s) in magnitude: |a - b| < 2^(63 - 18) = 2^45 for floats at the default
18 fractional bits (2^63 for integers). Public constants beyond the ring's range (-inf,
finfo.min) are saturated when encoded, far inside that bound; ``max(-inf, x)`` and
``min(inf, x)`` are recognised and cost nothing. Results are booleans held as 0/1 secrets at
scale 0. Reductions are log-depth trees: each level is ONE msb call and ONE product call.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from secjax.primitives import register
from secjax.protocols.base import MULTIPLY, Local, array_namespace
from secjax.values import Public


def _not(ctx, bits, shape):
    return ctx.protocol.sub(ctx.ones(shape), bits)


def _broadcast_to(x, *, shape):
    return jnp.broadcast_to(x, shape)


def broadcast_operand(ctx, value, shape):
    """Shares of ``value`` (of any kind) broadcast to ``shape``."""
    secret = ctx.secret(value)
    if tuple(secret.shape) == tuple(shape):
        return secret.shares
    return ctx.protocol.local(Local.of(_broadcast_to, shape=tuple(shape)), secret.shares)


def _difference(ctx, a, b):
    shape = ctx.out_avals[0].shape
    return ctx.protocol.sub(broadcast_operand(ctx, a, shape), broadcast_operand(ctx, b, shape))


@register("lt", "gt", "ge", "le")
def order_rule(ctx, a, b, **_):
    """a < b is msb(a - b); a > b is msb(b - a); ge and le are their complements."""
    name = ctx.primitive
    diff = _difference(ctx, a, b) if name in ("lt", "ge") else _difference(ctx, b, a)
    bits = ctx.protocol.msb(diff)
    if name in ("ge", "le"):
        bits = _not(ctx, bits, ctx.out_avals[0].shape)
    return ctx.make(bits, ctx.out_avals[0])


@register("eq", "ne")
def equality_rule(ctx, a, b, **_):
    bits = ctx.protocol.eqz(_difference(ctx, a, b))
    if ctx.primitive == "ne":
        bits = _not(ctx, bits, ctx.out_avals[0].shape)
    return ctx.make(bits, ctx.out_avals[0])


def _infinite(value, sign: int) -> bool:
    if not isinstance(value, Public) or not jnp.issubdtype(value.dtype, jnp.floating):
        return False
    return bool(np.all(np.asarray(value.value, dtype=np.float64) == sign * np.inf))


@register("max", "min")
def max_min_rule(ctx, a, b, **_):
    """max = b + [a >= b] (a - b), min = a - [a >= b] (a - b): one msb, one product.
    max(-inf, x) and min(inf, x) are x."""
    out_aval = ctx.out_avals[0]
    neutral = -1 if ctx.primitive == "max" else 1
    for this, other in ((a, b), (b, a)):
        if _infinite(this, neutral) and tuple(other.shape) == tuple(out_aval.shape):
            return ctx.secret(other)
    shape = out_aval.shape
    diff = _difference(ctx, a, b)
    keep_a = _not(ctx, ctx.protocol.msb(diff), shape)
    moved = ctx.protocol.bilinear(MULTIPLY, keep_a, diff)
    base, op = (
        (broadcast_operand(ctx, b, shape), ctx.protocol.add)
        if ctx.primitive == "max"
        else (broadcast_operand(ctx, a, shape), ctx.protocol.sub)
    )
    return ctx.make(op(base, moved), out_aval)


@register("abs")
def abs_rule(ctx, x, **_):
    """|x| = x (1 - 2 msb(x))."""
    x = ctx.secret(x)
    s = ctx.protocol.msb(x.shares)
    sign = ctx.protocol.sub(ctx.ones(x.shape), ctx.protocol.add(s, s))
    return ctx.make(ctx.protocol.bilinear(MULTIPLY, sign, x.shares), ctx.out_avals[0])


@register("sign")
def sign_rule(ctx, x, **_):
    """sign(x) = 1 - 2 msb(x) - [x == 0]."""
    x = ctx.secret(x)
    protocol = ctx.protocol
    s = protocol.msb(x.shares)
    sign = protocol.sub(protocol.sub(ctx.ones(x.shape), protocol.add(s, s)), protocol.eqz(x.shares))
    scale = ctx.scale(ctx.out_avals[0].dtype)
    if scale:
        sign = protocol.scale_up(sign, scale)
    return ctx.make(sign, ctx.out_avals[0])


def _unstack2(x):
    return x[0], x[1]


def clamp_shares(protocol, xs, los, his):
    """Shares of clamp(lo, x, hi) = x + [x < lo] (lo - x) + [x > hi] (hi - x) for shares of
    one shape: both comparisons in ONE msb call, both products in ONE product call."""
    below_above = protocol.msb(protocol.stack(protocol.sub(xs, los), protocol.sub(his, xs)))
    moves = protocol.bilinear(
        MULTIPLY, below_above, protocol.stack(protocol.sub(los, xs), protocol.sub(his, xs))
    )
    down, up = protocol.local(Local(_unstack2), moves)
    return protocol.add(xs, protocol.add(down, up))


@register("clamp")
def clamp_rule(ctx, lo, x, hi, **_):
    shape = ctx.out_avals[0].shape
    xs, los, his = (broadcast_operand(ctx, v, shape) for v in (x, lo, hi))
    return ctx.make(clamp_shares(ctx.protocol, xs, los, his), ctx.out_avals[0])


# -- reductions ---------------------------------------------------------------------------------


# Layout maps of whole share arrays (leading share axes left alone), numpy or JAX alike.
def to_last(x, *, perm, shape):
    lead = x.ndim - len(perm)
    moved = array_namespace(x).transpose(x, (*range(lead), *(lead + axis for axis in perm)))
    return moved.reshape(x.shape[:lead] + tuple(shape))


def pair_halves(x, *, h):
    n = x.shape[-1]
    # adjacent pairs (2i, 2i+1): winners stay in position order, so ties resolve to the
    # lowest index at every level
    return x[..., 0 : 2 * h : 2], x[..., 1 : 2 * h : 2], x[..., 2 * h : n]


def _concat_last(a, b):
    return array_namespace(a).concatenate([a, b], axis=-1)


def _squeeze_last(x):
    return x[..., 0]


CONCAT_LAST = Local(_concat_last, on_shares=True)
SQUEEZE_LAST = Local(_squeeze_last, on_shares=True)


def tree_reduce(ctx, x, axes, *, largest: bool, with_index: bool):
    """Max (or min) of ``x`` over ``axes`` by a log-depth tree of pairwise comparisons; the
    index of the first extreme element when ``with_index`` (ties keep the lower index)."""
    protocol = ctx.protocol
    x = ctx.secret(x)
    keep = [d for d in range(len(x.shape)) if d not in axes]
    perm = tuple(keep) + tuple(axes)
    n = int(np.prod([x.shape[d] for d in axes], dtype=np.int64))
    kept_shape = tuple(x.shape[d] for d in keep)
    values = protocol.local(
        Local.of(to_last, perm=perm, shape=kept_shape + (n,), on_shares=True), x.shares
    )
    index = None
    if with_index:
        iota = jnp.broadcast_to(jnp.arange(n, dtype=ctx.ring.dtype), kept_shape + (n,))
        index = protocol.from_public(iota)
    while n > 1:
        h = n // 2
        lv, rv, rest_v = protocol.local(Local.of(pair_halves, h=h, on_shares=True), values)
        diff = protocol.sub(lv, rv)
        # keep the left (lower-index) element when it is >= (max) or <= (min) the right one
        below = protocol.msb(diff if largest else protocol.neg(diff))
        keep_left = _not(ctx, below, kept_shape + (h,))
        if with_index:
            li, ri, rest_i = protocol.local(Local.of(pair_halves, h=h, on_shares=True), index)
            moves = protocol.bilinear(
                MULTIPLY,
                protocol.stack(keep_left, keep_left),
                protocol.stack(diff, protocol.sub(li, ri)),
            )
            move_v, move_i = protocol.local(Local(_unstack2), moves)
            index = protocol.local(CONCAT_LAST, protocol.add(ri, move_i), rest_i)
        else:
            move_v = protocol.bilinear(MULTIPLY, keep_left, diff)
        values = protocol.local(CONCAT_LAST, protocol.add(rv, move_v), rest_v)
        n = h + (n - 2 * h)
    return protocol.local(SQUEEZE_LAST, values), (
        protocol.local(SQUEEZE_LAST, index) if with_index else None
    )


@register("reduce_max", "reduce_min")
def reduce_max_rule(ctx, x, *, axes, **_):
    values, _ = tree_reduce(
        ctx, x, tuple(axes), largest=ctx.primitive == "reduce_max", with_index=False
    )
    return ctx.make(values, ctx.out_avals[0])


@register("argmax", "argmin")
def argmax_rule(ctx, x, *, axes, **_):
    """Index of the first maximum (minimum): the tree carries indices along, selected by
    the same bits in the same product call as the values."""
    _, index = tree_reduce(ctx, x, tuple(axes), largest=ctx.primitive == "argmax", with_index=True)
    return ctx.make(index, ctx.out_avals[0])
