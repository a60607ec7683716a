"""Rules for the reductions that are not sums or extremes: ``reduce_and``, ``reduce_or`` and
``reduce_xor`` of secret booleans (``jnp.all``, ``any``, ``array_equal``; the NaN checks of
``median``), ``reduce_prod``, and the cumulative ``cumprod``, ``cummax`` and ``cummin``.

Booleans are 0/1 ring values, so a logical reduction is a test on their sum s over n
elements: all is [s == n] and any is 1 - [s == 0] (ONE equality test per output element,
whatever n), xor is the lowest bit of s, which a left shift by ring_bits - 1 (local) moves
to the sign bit (ONE comparison).

A product is a log-depth tree of pairwise products (one product call, truncated back to
the operand's scale, per level). The cumulative reductions are the Hillis-Steele prefix
scan: ceil(log2 n) levels, each combining every element with the one 2^level before it
(one comparison call and one product call for max and min; one product call for prod).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from secjax.primitives import register
from secjax.primitives.bilinear import apply_bilinear
from secjax.primitives.compare import CONCAT_LAST, SQUEEZE_LAST, pair_halves, to_last
from secjax.protocols.base import MULTIPLY, Local, array_namespace
from secjax.values import Public


def _sum_over(x, *, axes, rank):
    lead = x.ndim - rank
    return array_namespace(x).sum(x, axis=tuple(lead + a for a in axes), dtype=x.dtype)


def _count(ctx, x, axes):
    secret = ctx.secret(x)
    fn = Local.of(_sum_over, axes=tuple(axes), rank=len(secret.shape), on_shares=True)
    n = int(np.prod([secret.shape[a] for a in axes], dtype=np.int64))
    return ctx.protocol.local(fn, secret.shares), n


def _check_bool(ctx, x):
    if not jnp.issubdtype(x.dtype, jnp.bool_):
        raise ctx.unsupported(
            f"{ctx.primitive} of secret {np.dtype(x.dtype)} is bitwise; "
            "apply it to booleans (jnp.all, jnp.any) or compare first"
        )


@register("reduce_and", "reduce_or")
def reduce_and_or_rule(ctx, x, *, axes, **_):
    _check_bool(ctx, x)
    protocol = ctx.protocol
    total, n = _count(ctx, x, axes)
    shape = ctx.out_avals[0].shape
    if ctx.primitive == "reduce_and":
        offset = np.full(shape, (-n) % (1 << ctx.ring.bits), ctx.ring.dtype)
        return ctx.make(protocol.eqz(protocol.add_public(total, offset)), ctx.out_avals[0])
    ones = ctx.ones(shape)
    return ctx.make(protocol.sub(ones, protocol.eqz(total)), ctx.out_avals[0])


def _shift_to_sign(x, *, bits):
    return x << bits


@register("reduce_xor")
def reduce_xor_rule(ctx, x, *, axes, **_):
    _check_bool(ctx, x)
    total, _ = _count(ctx, x, axes)
    shifted = ctx.protocol.local(Local.of(_shift_to_sign, bits=ctx.ring.bits - 1), total)
    return ctx.make(ctx.protocol.msb(shifted), ctx.out_avals[0])


@register("reduce_prod")
def reduce_prod_rule(ctx, x, *, axes, **_):
    """Pairwise products, level by level: ceil(log2 n) product calls."""
    protocol = ctx.protocol
    secret = ctx.secret(x)
    keep = [d for d in range(len(secret.shape)) if d not in axes]
    kept_shape = tuple(secret.shape[d] for d in keep)
    n = int(np.prod([secret.shape[d] for d in axes], dtype=np.int64))
    if n == 0:
        return Public(jnp.ones(ctx.out_avals[0].shape, ctx.out_avals[0].dtype))
    shares = protocol.local(
        Local.of(to_last, perm=tuple(keep) + tuple(axes), shape=kept_shape + (n,), on_shares=True),
        secret.shares,
    )
    while n > 1:
        h = n // 2
        left, right, rest = protocol.local(Local.of(pair_halves, h=h, on_shares=True), shares)
        aval = jax.ShapeDtypeStruct(kept_shape + (h,), secret.dtype)
        product = apply_bilinear(
            ctx, MULTIPLY, ctx.make(left, aval), ctx.make(right, aval), out_aval=aval
        )
        shares = protocol.local(CONCAT_LAST, product.shares, rest)
        n = h + (n - 2 * h)
    return ctx.make(protocol.local(SQUEEZE_LAST, shares), ctx.out_avals[0])


def _shift_along(x, *, axis, d, reverse):
    """``x`` moved ``d`` places along logical ``axis`` (from its end), zeros coming in."""
    xp = array_namespace(x)
    axis = x.ndim + axis
    n = x.shape[axis]
    zeros = xp.zeros(x.shape[:axis] + (d,) + x.shape[axis + 1 :], x.dtype)
    kept = xp.take(x, xp.arange(d, n) if reverse else xp.arange(n - d), axis=axis)
    return xp.concatenate([kept, zeros] if reverse else [zeros, kept], axis=axis)


def _combine(ctx, name, a, b, aval):
    """Shares of op(a, b) for the cumulative reduction ``name``."""
    protocol = ctx.protocol
    if name == "cumprod":
        return apply_bilinear(
            ctx, MULTIPLY, ctx.make(a, aval), ctx.make(b, aval), out_aval=aval
        ).shares
    diff = protocol.sub(a, b)
    below = protocol.msb(diff)  # [a < b]
    if name == "cummax":  # a + [a < b] (b - a)
        return protocol.sub(a, protocol.bilinear(MULTIPLY, below, diff))
    return protocol.add(b, protocol.bilinear(MULTIPLY, below, diff))  # min: b + [a < b] (a - b)


@register("cumprod", "cummax", "cummin")
def cumulative_rule(ctx, x, *, axis, reverse, **_):
    """Hillis-Steele prefix scan: ceil(log2 n) levels; positions with no partner at a
    level combine with the operation's identity (1, -inf, +inf: a public constant)."""
    protocol = ctx.protocol
    secret = ctx.secret(x)
    aval = ctx.out_avals[0]
    rank = len(secret.shape)
    n = secret.shape[axis]
    dtype = np.dtype(secret.dtype)
    floating = jnp.issubdtype(dtype, jnp.floating)
    identity = {
        "cumprod": 1,
        "cummax": -np.inf if floating else np.iinfo(dtype).min,
        "cummin": np.inf if floating else np.iinfo(dtype).max,
    }[ctx.primitive]
    fill = ctx.encode_public(np.asarray(identity, dtype), ctx.scale(dtype))
    shares = secret.shares
    d = 1
    while d < n:
        shifted = protocol.local(
            Local.of(_shift_along, axis=axis - rank, d=d, reverse=bool(reverse), on_shares=True),
            shares,
        )
        head = np.zeros(secret.shape, bool)
        index = [slice(None)] * rank
        index[axis] = slice(n - d, n) if reverse else slice(0, d)
        head[tuple(index)] = True
        shifted = protocol.add_public(shifted, np.where(head, fill, 0).astype(ctx.ring.dtype))
        shares = _combine(ctx, ctx.primitive, shares, shifted, aval)
        d *= 2
    return ctx.make(shares, aval)
