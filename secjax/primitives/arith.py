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
from secjax.primitives.bilinear import apply_bilinear
from secjax.primitives.structural import freeze
from secjax.primitives.transcendental import integer_power, secret_division
from secjax.protocols.base import MULTIPLY, Bilinear
from secjax.values import DeferredSecret, Public, Secret, is_float


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


@register("div")
def div_rule(ctx, x, y, **_):
    """Division. By a public divisor: a product with its public reciprocal. By a secret
    divisor: one secret reciprocal of the divisor (taken before a broadcast_in_dim, so
    softmax computes one per row), then a product (secjax.primitives.transcendental)."""
    if not is_float(ctx.out_avals[0].dtype):
        from secjax.primitives.division import integer_division  # exact long division

        return ctx.make(integer_division(ctx, x, y, remainder=False), ctx.out_avals[0])
    if not isinstance(y, Public):
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
        nonzero = ctx.protocol.sub(ctx.ones(x.shape), ctx.protocol.eqz(x.shares))
        return ctx.make(nonzero, out_aval)
    if dst > src:
        return ctx.make(ctx.protocol.scale_up(x.shares, dst - src), out_aval)
    if dst < src:
        raise ctx.unsupported(
            f"converting a secret {x.dtype} to {np.dtype(new_dtype)} rounds toward zero, a "
            "data-dependent step secjax does not take silently"
        )
    return ctx.make(x.shares, out_aval)
