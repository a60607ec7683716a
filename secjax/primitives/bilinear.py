"""Products of values of any kinds: the one path from a rule to ``Protocol.bilinear``.

``apply_bilinear`` takes public, private and secret operands, encodes public ones at the
scale that makes their products exact where it can (integers at scale 0), and truncates the
product back to its output's scale once; ``apply_private_bilinear`` lets a party's private
operand skip its sharing; ``positive_power`` multiplies by repeated squaring. Every rule that
multiplies uses these (arith, transcendental, lookup, comparisons, division...).
"""

from __future__ import annotations

import jax.numpy as jnp

from secjax.protocols.base import MULTIPLY, Bilinear
from secjax.values import Private, Public


def apply_bilinear(ctx, op: Bilinear, x, y, out_aval=None, *, width: int | None = None):
    """``op(x, y)`` for values of any kinds, truncated back to the scale of ``out_aval``
    (default: the equation's output). ``width``: a product of secrets that needs no
    truncation may run in the narrower ring ``Z_2^width`` (:meth:`Protocol.bilinear`)."""
    out_aval = ctx.out_avals[0] if out_aval is None else out_aval
    target = ctx.scale(out_aval.dtype)
    if isinstance(x, Public) or isinstance(y, Public):
        public, other, public_first = (x, y, True) if isinstance(x, Public) else (y, x, False)
        scale = ctx.public_scale(public.value)
        encoded = ctx.encode_public(public.value, scale)
        excess = ctx.scale(other.dtype) + scale - target

        def compute():
            shares = ctx.protocol.bilinear_public(
                op, ctx.secret(other).shares, encoded, public_first=public_first
            )
            return ctx.truncate(shares, excess, scale=target + excess)

        # computed when first used: a product only a pattern rule looks through is free
        return ctx.deferred(compute, out_aval)
    square = x is y and op == MULTIPLY  # nonnegative: truncated correctly up to 2^(k-1)
    x, y = ctx.secret(x), ctx.secret(y)
    excess = ctx.scale(x.dtype) + ctx.scale(y.dtype) - target
    shares = ctx.protocol.bilinear(
        op,
        x.shares,
        y.shares,
        trunc_bits=max(excess, 0),
        scale=target + excess,
        nonnegative=square,
        width=width,
    )
    return ctx.make(ctx.truncate(shares, min(excess, 0)), out_aval)


def apply_private_bilinear(
    ctx,
    op: Bilinear,
    private: Private,
    other,
    out_aval,
    *,
    private_first: bool = True,
    width: int | None = None,
):
    """``op(private, other)`` (``op(other, private)`` unless ``private_first``) for a private
    value used by this product alone (a one-hot of private token ids): its owner need not
    share it first (:meth:`secjax.protocols.base.Protocol.bilinear_private`). ``width``: as
    in :func:`apply_bilinear`."""
    other = ctx.secret(other)
    excess = ctx.scale(private.dtype) + ctx.scale(other.dtype) - ctx.scale(out_aval.dtype)
    clear = (
        private.value
        if ctx.protocol.runtime.holds(private.owner)
        else jnp.zeros(private.shape, private.dtype)
    )
    encoded = ctx.encode_public(clear, ctx.scale(private.dtype))
    shares = ctx.protocol.bilinear_private(
        op,
        encoded,
        private.owner,
        other.shares,
        private_first=private_first,
        trunc_bits=max(excess, 0),
        scale=ctx.scale(out_aval.dtype) + excess,
        width=width,
    )
    return ctx.make(ctx.truncate(shares, min(excess, 0)), out_aval)


def positive_power(ctx, x, y: int, aval):
    """x**y for an integer y >= 1 by repeated squaring (about 2 log2 y products); each
    square is truncated as a nonnegative value."""
    result, power, remaining = None, ctx.secret(x), y
    while True:
        if remaining & 1:
            result = power if result is None else apply_bilinear(ctx, MULTIPLY, result, power, aval)
        remaining >>= 1
        if not remaining:
            return result
        power = apply_bilinear(ctx, MULTIPLY, power, power, aval)
