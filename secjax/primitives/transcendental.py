"""Rules for transcendental functions: exp, log, logistic, tanh, erf, erfc, rsqrt, sqrt,
pow, and the secret divisor of ``div`` (one reciprocal per row for ``div(a,
broadcast_in_dim(b))``, as in softmax).

Each rule runs the one description of its approximation (``secjax.primitives.approx``) on
secret fixed-point values (``SecureOps``), with the parameters of the session's policy
(``secjax.primitives.policy``). Patterns recognised (``secjax.primitives.patterns``):

- exact GeLU ``mul(0.5 x, erfc(-x / sqrt 2))``: the erfc becomes 2 Phi(x) of the policy's
  piecewise GeLU (PUMA by default), so the product computes GeLU = x Phi(x);
- tanh GeLU ``0.5 x (1 + tanh(c (x + 0.044715 x^3)))``: the tanh becomes 2 Phi(x) - 1.
- ``exp(a - max(a))`` (softmax): the argument is known to be <= 0, one comparison is saved.
"""

from __future__ import annotations

import math

import numpy as np

from secjax.primitives import approx, register
from secjax.primitives.bilinear import apply_bilinear, positive_power
from secjax.primitives.patterns import (
    gelu_erf_input,
    gelu_tanh_input,
    is_minus_rowmax,
    known_positive,
    normalises_rows,
    public_scalar,
)
from secjax.primitives.secure_ops import Fx, SecureOps, require_float_output, run_approx
from secjax.primitives.structural import local_primitive
from secjax.protocols.base import MULTIPLY
from secjax.values import Public, is_float

# -- rules --------------------------------------------------------------------------------------


@register("exp")
def exp_rule(ctx, x, **_):
    nonpositive = is_minus_rowmax(ctx)
    pol = ctx.policy.exp
    return run_approx(ctx, x, lambda ops, v: approx.exp(ops, v, pol, nonpositive=nonpositive))


@register("exp2")
def exp2_rule(ctx, x, **_):
    pol = ctx.policy.exp
    return run_approx(ctx, x, lambda ops, v: approx.exp(ops, ops.mul_c(v, math.log(2.0)), pol))


@register("log")
def log_rule(ctx, x, **_):
    pol = ctx.policy.log
    return run_approx(ctx, x, lambda ops, v: approx.log(ops, v, pol))


@register("log1p")
def log1p_rule(ctx, x, **_):
    pol = ctx.policy.log
    return run_approx(ctx, x, lambda ops, v: approx.log(ops, ops.add_c(v, 1.0), pol))


@register("logistic")
def logistic_rule(ctx, x, **_):
    pieces = approx.logistic_pieces(ctx.policy.tanh)
    return run_approx(ctx, x, lambda ops, v: approx.piecewise(ops, v, pieces))


def _pieces_or_gelu(ctx, x, find_gelu_input, scale: float, offset: float, pieces):
    """``pieces`` at x, unless x is the inner argument of a GeLU written in this form: then
    the GeLU's Phi pieces as ``scale * Phi + offset`` at the GeLU's own input, so that the
    jaxpr's remaining ``0.5 x (...)`` product yields x Phi(x)."""
    pol = ctx.policy
    gelu_x = find_gelu_input(ctx) if pol.gelu.method != "erf" else None
    if gelu_x is not None:
        x, pieces = gelu_x, approx.gelu_phi_pieces(pol.gelu).scaled(scale, offset)
    return run_approx(ctx, x, lambda ops, v: approx.piecewise(ops, v, pieces))


@register("tanh")
def tanh_rule(ctx, x, **_):
    """tanh; in the tanh-form GeLU, tanh(...) = 2 Phi(x) - 1."""
    pieces = approx.odd_sigmoid_pieces("tanh", ctx.policy.tanh)
    return _pieces_or_gelu(ctx, x, gelu_tanh_input, 2.0, -1.0, pieces)


@register("erf")
def erf_rule(ctx, x, **_):
    pieces = approx.odd_sigmoid_pieces("erf", ctx.policy.erf)
    return run_approx(ctx, x, lambda ops, v: approx.piecewise(ops, v, pieces))


@register("erfc")
def erfc_rule(ctx, x, **_):
    """erfc = 1 - erf; in the erf-form GeLU, erfc(-x / sqrt 2) = 2 Phi(x)."""
    pieces = approx.odd_sigmoid_pieces("erf", ctx.policy.erf).scaled(-1.0, 1.0)
    return _pieces_or_gelu(ctx, x, gelu_erf_input, 2.0, 0.0, pieces)


@register("rsqrt")
def rsqrt_rule(ctx, x, **_):
    pol = ctx.policy.rsqrt
    return run_approx(ctx, x, lambda ops, v: approx.rsqrt(ops, v, pol))


@register("sqrt")
def sqrt_rule(ctx, x, **_):
    pol = ctx.policy.rsqrt
    return run_approx(ctx, x, lambda ops, v: approx.sqrt(ops, v, pol))


def reciprocal_value(ctx, y, aval, *, positive: bool = False):
    """A secret 1/y of shape and dtype ``aval`` (used by div and negative powers)."""
    ops = SecureOps(ctx)
    r = approx.reciprocal(ops, ops.enter(y), ctx.policy.reciprocal, positive=positive)
    return ops.leave(r, aval)


def secret_division(ctx, x, y):
    """x / y for a secret y: ONE reciprocal of the divisor before any broadcast (softmax
    divides by ``broadcast_in_dim(row_sum)``: one reciprocal per row), then a product.
    A divisor ``sqrt(v)`` becomes ``rsqrt(v)``. In softmax's normalisation the quotient is
    at most 1, so the reciprocal is held ``ring_bits - 4 - frac_bits`` bits fine (42 at the
    defaults; every r <= 2^(1 + frac_bits) and every product <= 2 then fit) and the product
    is truncated once: at frac_bits, 1/s of a row sum s in the thousands (2Quad's) would
    keep only a few significant bits."""
    require_float_output(ctx)
    pol = ctx.policy
    var, value = ctx.eqn.invars[1], y
    found = ctx.producer(1)
    broadcast = None
    if (
        found is not None
        and found[0].primitive.name == "broadcast_in_dim"
        and not isinstance(found[1][0], Public)
    ):
        broadcast = found[0]
        var, value = broadcast.invars[0], found[1][0]
    inner = ctx.producer(var)
    ops = SecureOps(ctx)
    normalising = normalises_rows(ctx, var)
    if (
        inner is not None
        and inner[0].primitive.name == "sqrt"
        and not isinstance(inner[1][0], Public)
    ):
        r = approx.rsqrt(ops, ops.enter(inner[1][0]), pol.rsqrt)
    else:
        r = approx.reciprocal(
            ops,
            ops.enter(value),
            pol.reciprocal,
            positive=normalising or known_positive(ctx, var),
            scale=ctx.ring.bits - 4 - ops.frac_bits if normalising else None,
        )
    if broadcast is not None:
        shares = ctx.protocol.local(
            local_primitive(
                broadcast.primitive,
                broadcast.params,
                rank=len(ctx.protocol.logical_shape(r.shares)),
            ),
            r.shares,
        )
        r = Fx(shares, r.scale)
    out_aval = ctx.out_avals[0]
    if normalising:
        return ops.leave(ops.mul(ops.enter(x), r, scale=ops.frac_bits), out_aval)
    reciprocal = ops.leave(r, broadcast.outvars[0].aval if broadcast else var.aval)
    if (
        isinstance(x, Public)
        and np.all(np.asarray(x.value) == 1)
        and tuple(reciprocal.shape) == tuple(out_aval.shape)
    ):
        return ctx.make(reciprocal.shares, out_aval)
    return apply_bilinear(ctx, MULTIPLY, x, reciprocal)


def integer_power(ctx, x, y: int, aval=None):
    """x**y for an integer y: repeated squaring (about 2 log2|y| products); a negative y
    takes the reciprocal first, then the power. ``aval``: the result's (default: the current
    equation's output)."""
    aval = ctx.out_avals[0] if aval is None else aval
    if y == 0:
        return Public(np.ones(aval.shape, aval.dtype))
    if y < 0:
        if not is_float(aval.dtype):
            raise ctx.unsupported(f"integer_pow with exponent {y} of a secret integer")
        x, y = reciprocal_value(ctx, x, aval), -y
    return positive_power(ctx, x, y, aval)


@register("pow")
def pow_rule(ctx, x, y, **_):
    """x ** y: a public exponent that is an integer or +-1/2 takes the integer power, sqrt
    or rsqrt rule; otherwise exp(y log x) (x > 0)."""
    require_float_output(ctx)
    pol = ctx.policy
    k = public_scalar(y)
    if k is not None:
        if k == round(k):
            return integer_power(ctx, x, int(round(k)))
        if k == 0.5:
            return run_approx(ctx, x, lambda ops, v: approx.sqrt(ops, v, pol.rsqrt))
        if k == -0.5:
            return run_approx(ctx, x, lambda ops, v: approx.rsqrt(ops, v, pol.rsqrt))
        return run_approx(
            ctx,
            x,
            lambda ops, v: approx.exp(ops, ops.mul_c(approx.log(ops, v, pol.log), k), pol.exp),
        )
    ops = SecureOps(ctx)
    if isinstance(x, Public):
        logx = np.log(np.asarray(x.value, dtype=np.float64))
        # an integer exponent (optax's step count) is lifted to frac_bits first, or the
        # product with log x would be rounded to an integer
        exponent = ops.enter(y)
        exponent = ops.rescale(exponent, max(exponent.scale, ops.frac_bits))
        out = approx.exp(ops, ops.mul_c(exponent, np.broadcast_to(logx, np.shape(logx))), pol.exp)
    else:
        out = approx.exp(
            ops, ops.mul(ops.enter(y), approx.log(ops, ops.enter(x), pol.log)), pol.exp
        )
    return ops.leave(out, ctx.out_avals[0])
