"""Rules for arithmetic: sums, products, contractions, powers and dtype conversions.

Products of two values at ``frac_bits`` fractional bits land at twice that and are truncated
back once; a dot product or convolution is truncated once after accumulation. A public
multiplier whose values are all integers (masks, counts, ``finfo.min``) is encoded at scale 0,
so its product needs no truncation at all.
"""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from secjax import ring as ring_ops
from secjax.primitives import register
from secjax.primitives.structural import freeze
from secjax.protocols.base import Bilinear
from secjax.values import DeferredSecret, Private, Public, Secret, is_float


@register("add", "sub")
def add_sub_rule(ctx, x, y, **_):
    """Sums are local: a public operand is shared trivially at the same scale. A sum with a
    deferred operand not computed yet is deferred too."""
    combine = ctx.protocol.add if ctx.primitive == "add" else ctx.protocol.sub

    def compute():
        return combine(ctx.secret(x).shares, ctx.secret(y).shares)
    if any(isinstance(v, DeferredSecret) and v.pending for v in (x, y)):
        return ctx.deferred(compute, ctx.out_avals[0])
    return ctx.make(compute(), ctx.out_avals[0])


@register("neg")
def neg_rule(ctx, x, **_):
    return ctx.make(ctx.protocol.neg(ctx.secret(x).shares), ctx.out_avals[0])


def apply_bilinear(ctx, op: Bilinear, x, y, out_aval=None):
    """``op(x, y)`` for values of any kinds, truncated back to the scale of ``out_aval``
    (default: the equation's output)."""
    out_aval = ctx.out_avals[0] if out_aval is None else out_aval
    target = ctx.scale(out_aval.dtype)
    if isinstance(x, Public) or isinstance(y, Public):
        public, other, public_first = (x, y, True) if isinstance(x, Public) else (y, x, False)
        scale = ctx.public_scale(public.value)
        encoded = ctx.encode_public(public.value, scale)
        excess = ctx.scale(other.dtype) + scale - target

        def compute():
            shares = ctx.protocol.bilinear_public(op, ctx.secret(other).shares, encoded,
                                                  public_first=public_first)
            return ctx.truncate(shares, excess, scale=target + excess)
        # computed when first used: a product only a pattern rule looks through is free
        return ctx.deferred(compute, out_aval)
    square = x is y and op == MULTIPLY   # nonnegative: truncated correctly up to 2^(k-1)
    x, y = ctx.secret(x), ctx.secret(y)
    excess = ctx.scale(x.dtype) + ctx.scale(y.dtype) - target
    shares = ctx.protocol.bilinear(op, x.shares, y.shares, trunc_bits=max(excess, 0),
                                   scale=target + excess, nonnegative=square)
    return ctx.make(ctx.truncate(shares, min(excess, 0)), out_aval)


def apply_private_bilinear(ctx, op: Bilinear, private: Private, other, out_aval,
                           *, private_first: bool = True):
    """``op(private, other)`` (``op(other, private)`` unless ``private_first``) for a private
    value used by this product alone (a one-hot of private token ids): its owner need not
    share it first (:meth:`secjax.protocols.base.Protocol.bilinear_private`)."""
    other = ctx.secret(other)
    excess = ctx.scale(private.dtype) + ctx.scale(other.dtype) - ctx.scale(out_aval.dtype)
    clear = (private.value if ctx.protocol.runtime.holds(private.owner)
             else jnp.zeros(private.shape, private.dtype))
    encoded = ctx.encode_public(clear, ctx.scale(private.dtype))
    shares = ctx.protocol.bilinear_private(op, encoded, private.owner, other.shares,
                                           private_first=private_first,
                                           trunc_bits=max(excess, 0),
                                           scale=ctx.scale(out_aval.dtype) + excess)
    return ctx.make(ctx.truncate(shares, min(excess, 0)), out_aval)


MULTIPLY = Bilinear(jnp.multiply)


@register("mul")
def mul_rule(ctx, x, y, **_):
    return apply_bilinear(ctx, MULTIPLY, x, y)


@register("dot_general")
def dot_general_rule(ctx, x, y, *, dimension_numbers, **_):
    """Any contraction and batch dimensions; one truncation after accumulation."""
    op = Bilinear(ring_ops.dot_general, (("dimension_numbers", freeze(dimension_numbers)),))
    return apply_bilinear(ctx, op, x, y)


@register("conv_general_dilated")
def conv_rule(ctx, x, y, *, precision=None, preferred_element_type=None, **params):
    """Convolution is bilinear in (input, kernel): the ring computes it exactly."""
    op = Bilinear(ring_ops.conv_general_dilated, freeze(params))
    return apply_bilinear(ctx, op, x, y)


@register("square")
def square_rule(ctx, x, **_):
    return apply_bilinear(ctx, MULTIPLY, x, x)


@register("integer_pow")
def integer_pow_rule(ctx, x, *, y, **_):
    """x**y; a positive power of a secret (products only) is deferred until first used."""
    aval = ctx.out_avals[0]
    if y > 1 and isinstance(x, Secret):
        return ctx.deferred(lambda: integer_power(ctx, x, y, aval).shares, aval)
    return integer_power(ctx, x, y, aval)


def integer_power(ctx, x, y: int, aval=None):
    """x**y for an integer y: repeated squaring (about 2 log2|y| products); a negative y
    takes the reciprocal first (secjax.primitives.transcendental), then the power.
    ``aval``: the result's (default: the current equation's output)."""
    aval = ctx.out_avals[0] if aval is None else aval
    if y == 0:
        return Public(jnp.ones(aval.shape, aval.dtype))
    if y < 0:
        if not is_float(aval.dtype):
            raise ctx.unsupported(f"integer_pow with exponent {y} of a secret integer")
        from secjax.primitives.transcendental import reciprocal_value

        x, y = reciprocal_value(ctx, x, aval), -y
    result, power, remaining = None, ctx.secret(x), y
    while True:
        if remaining & 1:
            result = (power if result is None
                      else apply_bilinear(ctx, MULTIPLY, result, power, aval))
        remaining >>= 1
        if not remaining:
            return result
        power = apply_bilinear(ctx, MULTIPLY, power, power, aval)


@register("div")
def div_rule(ctx, x, y, **_):
    """Division. By a public divisor: a product with its public reciprocal. By a secret
    divisor: one secret reciprocal of the divisor (taken before a broadcast_in_dim, so
    softmax computes one per row), then a product (secjax.primitives.transcendental)."""
    if not is_float(ctx.out_avals[0].dtype):
        raise ctx.unsupported("integer division of a secret rounds data-dependently")
    if not isinstance(y, Public):
        from secjax.primitives.transcendental import secret_division

        return secret_division(ctx, x, y)
    reciprocal = Public(1.0 / np.asarray(y.value, dtype=np.float64))
    return apply_bilinear(ctx, MULTIPLY, x, reciprocal)


@register("convert_element_type")
def convert_rule(ctx, x, *, new_dtype, **_):
    """Change of dtype: rescale between integer and fixed point, or test against zero."""
    x = ctx.secret(x)
    ctx.check_dtype(new_dtype)
    out_aval = ctx.out_avals[0]
    src, dst = ctx.scale(x.dtype), ctx.scale(new_dtype)
    if jnp.issubdtype(new_dtype, jnp.bool_) and not jnp.issubdtype(x.dtype, jnp.bool_):
        nonzero = ctx.protocol.sub(ctx.protocol.from_public(_ones(ctx, x.shape)),
                                   ctx.protocol.eqz(x.shares))
        return ctx.make(nonzero, out_aval)
    if dst > src:
        return ctx.make(ctx.protocol.scale_up(x.shares, dst - src), out_aval)
    if dst < src:
        raise ctx.unsupported(
            f"converting a secret {x.dtype} to {np.dtype(new_dtype)} rounds toward zero, a "
            "data-dependent step secjax does not take silently")
    return ctx.make(x.shares, out_aval)


def _ones(ctx, shape):
    return jnp.ones(shape, ctx.ring.dtype)

