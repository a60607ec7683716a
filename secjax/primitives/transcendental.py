"""Rules for transcendental functions: exp, log, logistic, tanh, erf, erfc, rsqrt, sqrt,
pow, and the secret divisor of ``div`` (one reciprocal per row for ``div(a,
broadcast_in_dim(b))``, as in softmax).

Each rule runs the one description of its approximation (``secjax.primitives.approx``) on
secret fixed-point values (``SecureOps``), with the parameters of the session's policy
(``secjax.primitives.policy``). Two jaxpr patterns are recognised through ``ctx.producer``:

- exact GeLU ``mul(0.5 x, erfc(-x / sqrt 2))``: the erfc becomes 2 Phi(x) of the policy's
  piecewise GeLU (PUMA by default), so the product computes GeLU = x Phi(x);
- tanh GeLU ``0.5 x (1 + tanh(c (x + 0.044715 x^3)))``: the tanh becomes 2 Phi(x) - 1.
- ``exp(a - max(a))`` (softmax): the argument is known to be <= 0, one comparison is saved.
"""
from __future__ import annotations

import math

import numpy as np
from jax.extend.core import Literal

from secjax.primitives import approx, register
from secjax.primitives.arith import MULTIPLY, apply_bilinear
from secjax.primitives.policy import DEFAULT_POLICY
from secjax.primitives.secure_ops import Fx, SecureOps
from secjax.primitives.structural import local_primitive
from secjax.values import Public, is_float


def policy(ctx):
    return getattr(ctx, "policy", None) or DEFAULT_POLICY


def _float_out(ctx):
    dtype = ctx.out_avals[0].dtype
    if not is_float(dtype):
        raise ctx.unsupported(f"{ctx.primitive} of a secret needs a floating dtype, got {dtype}")


def run_approx(ctx, x, algorithm):
    """Apply ``algorithm(ops, fx)`` (a description of :mod:`secjax.primitives.approx`) to the
    value ``x`` under the session's protocol: a secret of the current equation's output."""
    _float_out(ctx)
    o = SecureOps(ctx)
    return o.leave(algorithm(o, o.enter(x)), ctx.out_avals[0])


# -- looking at producers ---------------------------------------------------------------------


def var_producer(ctx, var):
    """``(eqn, values)`` that computed ``var`` in the current jaxpr, or None."""
    if isinstance(var, Literal):
        return None
    return ctx.producers.get(var)


def _public_scalar(value):
    if isinstance(value, Public) and np.size(value.value) == 1:
        return float(np.asarray(value.value, dtype=np.float64).reshape(()))
    return None


def _split_scalar_mul(found):
    """For ``mul(v, k)`` / ``mul(k, v)`` with a public scalar k: (k, var of v, v)."""
    if found is None or found[0].primitive.name != "mul":
        return None
    eqn, values = found
    for i in (0, 1):
        k = _public_scalar(values[i])
        if k is not None and _public_scalar(values[1 - i]) is None:
            return k, eqn.invars[1 - i], values[1 - i]
    return None


_TRANSPARENT = ("broadcast_in_dim", "reshape", "copy", "stop_gradient", "squeeze",
                "convert_element_type")


def through(producer, var):
    """Follow ``var`` back through shape-only and copy equations: ``(var, eqn)`` with ``eqn``
    the first other equation on the way (None for an input). ``producer(var)`` is the
    equation that computed ``var`` or None (the same helpers serve a rule, which sees the
    values computed so far, and a static look at a whole jaxpr)."""
    eqn = producer(var)
    while eqn is not None and eqn.primitive.name in _TRANSPARENT:
        var = eqn.invars[0]
        eqn = producer(var)
    return var, eqn


def minus_rowmax_source(producer, var, public):
    """The variable ``a`` when ``var`` is ``a - max(a)`` (softmax's shift: a reduce_max of
    ``a``, through copies, broadcasts and ``max`` with public values, such as jax.nn.softmax's
    ``max(-inf, m)``), else None. ``public(eqn, i)``: whether operand i of eqn is public."""
    eqn = producer(var)
    if eqn is None or eqn.primitive.name != "sub":
        return None
    a_var = eqn.invars[0]
    _, inner = through(producer, eqn.invars[1])
    while inner is not None and inner.primitive.name == "max":
        secret = [i for i in range(len(inner.invars)) if not public(inner, i)]
        if len(secret) != 1:
            return None
        _, inner = through(producer, inner.invars[secret[0]])
    found = (inner is not None and inner.primitive.name == "reduce_max"
             and inner.invars[0] is a_var)
    return a_var if found else None


def _eqn_producer(ctx):
    """``producer`` for :func:`through` over the equations a rule has seen so far."""
    return lambda var: (var_producer(ctx, var) or (None,))[0]


def _is_minus_rowmax(ctx) -> bool:
    """Whether the operand of the current equation is ``a - max(a)`` (softmax)."""
    def public(eqn, i):
        return isinstance(ctx.producers[eqn.outvars[0]][1][i], Public)

    return minus_rowmax_source(_eqn_producer(ctx), ctx.eqn.invars[0], public) is not None


def _known_positive(ctx, var) -> bool:
    """Whether ``var`` is a sum of exponentials (or an exponential): softmax denominators.
    (Under the 2Quad softmax the exp equation computes relu(x + c)^2 >= 0: a sum of 0
    saturates the reciprocal and multiplies zeros, so the sign comparison is not needed.)"""
    producer = _eqn_producer(ctx)
    _, eqn = through(producer, var)
    if eqn is not None and eqn.primitive.name == "reduce_sum":
        _, eqn = through(producer, eqn.invars[0])
    return eqn is not None and eqn.primitive.name == "exp"


_GELU_ERF = -1.0 / math.sqrt(2.0)
_GELU_TANH = (math.sqrt(2.0 / math.pi), 0.044715)


def _gelu_erf_input(ctx):
    """x if the current erfc's argument is -x / sqrt 2 (exact GeLU), else None."""
    split = _split_scalar_mul(ctx.producer(0))
    if split is None:
        return None
    k, var, value = split
    if abs(k - _GELU_ERF) < 1e-6:
        return value
    if abs(k + _GELU_ERF) < 1e-6:
        found = var_producer(ctx, var)
        if found is not None and found[0].primitive.name == "neg":
            return found[1][0]
    return None


def _gelu_tanh_input(ctx):
    """x if the current tanh's argument is c (x + 0.044715 x^3) (tanh GeLU), else None."""
    split = _split_scalar_mul(ctx.producer(0))
    if split is None or abs(split[0] - _GELU_TANH[0]) > 1e-6:
        return None
    found = var_producer(ctx, split[1])
    if found is None or found[0].primitive.name != "add":
        return None
    eqn, values = found
    for i in (0, 1):
        cubic = _split_scalar_mul(var_producer(ctx, eqn.invars[1 - i]))
        if cubic is None or abs(cubic[0] - _GELU_TANH[1]) > 1e-6:
            continue
        power = var_producer(ctx, cubic[1])
        if (power is not None and power[0].primitive.name == "integer_pow"
                and power[0].params.get("y") == 3 and power[0].invars[0] is eqn.invars[i]):
            return values[i]
    return None


# -- rules --------------------------------------------------------------------------------------


@register("exp")
def exp_rule(ctx, x, **_):
    nonpositive = _is_minus_rowmax(ctx)
    pol = policy(ctx).exp
    return run_approx(ctx, x, lambda o, v: approx.exp(o, v, pol, nonpositive=nonpositive))


@register("exp2")
def exp2_rule(ctx, x, **_):
    pol = policy(ctx).exp
    return run_approx(ctx, x, lambda o, v: approx.exp(o, o.mul_c(v, math.log(2.0)), pol))


@register("log")
def log_rule(ctx, x, **_):
    pol = policy(ctx).log
    return run_approx(ctx, x, lambda o, v: approx.log(o, v, pol))


@register("log1p")
def log1p_rule(ctx, x, **_):
    pol = policy(ctx).log
    return run_approx(ctx, x, lambda o, v: approx.log(o, o.add_c(v, 1.0), pol))


@register("logistic")
def logistic_rule(ctx, x, **_):
    pieces = approx.logistic_pieces(policy(ctx).tanh)
    return run_approx(ctx, x, lambda o, v: approx.piecewise(o, v, pieces))


def _pieces_or_gelu(ctx, x, find_gelu_input, scale: float, offset: float, pieces):
    """``pieces`` at x, unless x is the inner argument of a GeLU written in this form: then
    the GeLU's Phi pieces as ``scale * Phi + offset`` at the GeLU's own input, so that the
    jaxpr's remaining ``0.5 x (...)`` product yields x Phi(x)."""
    pol = policy(ctx)
    gelu_x = find_gelu_input(ctx) if pol.gelu.method != "erf" else None
    if gelu_x is not None:
        x, pieces = gelu_x, approx.gelu_phi_pieces(pol.gelu).scaled(scale, offset)
    return run_approx(ctx, x, lambda o, v: approx.piecewise(o, v, pieces))


@register("tanh")
def tanh_rule(ctx, x, **_):
    """tanh; in the tanh-form GeLU, tanh(...) = 2 Phi(x) - 1."""
    pieces = approx.odd_sigmoid_pieces("tanh", policy(ctx).tanh)
    return _pieces_or_gelu(ctx, x, _gelu_tanh_input, 2.0, -1.0, pieces)


@register("erf")
def erf_rule(ctx, x, **_):
    pieces = approx.odd_sigmoid_pieces("erf", policy(ctx).erf)
    return run_approx(ctx, x, lambda o, v: approx.piecewise(o, v, pieces))


@register("erfc")
def erfc_rule(ctx, x, **_):
    """erfc = 1 - erf; in the erf-form GeLU, erfc(-x / sqrt 2) = 2 Phi(x)."""
    pieces = approx.odd_sigmoid_pieces("erf", policy(ctx).erf).scaled(-1.0, 1.0)
    return _pieces_or_gelu(ctx, x, _gelu_erf_input, 2.0, 0.0, pieces)


@register("rsqrt")
def rsqrt_rule(ctx, x, **_):
    pol = policy(ctx).rsqrt
    return run_approx(ctx, x, lambda o, v: approx.rsqrt(o, v, pol))


@register("sqrt")
def sqrt_rule(ctx, x, **_):
    pol = policy(ctx).rsqrt
    return run_approx(ctx, x, lambda o, v: approx.sqrt(o, v, pol))


def reciprocal_value(ctx, y, aval, *, positive: bool = False):
    """A secret 1/y of shape and dtype ``aval`` (used by div and negative powers)."""
    o = SecureOps(ctx)
    r = approx.reciprocal(o, o.enter(y), policy(ctx).reciprocal, positive=positive)
    return o.leave(r, aval)


def _normalises_rows(ctx, var) -> bool:
    """Whether the current ``div`` is ``e / s`` with ``s`` (``var``, before its broadcast) the
    sum of ``e`` and ``e`` an exponential: softmax's normalisation, a quotient in [0, 1]."""
    producer = _eqn_producer(ctx)
    _, eqn = through(producer, var)
    if eqn is None or eqn.primitive.name != "reduce_sum":
        return False
    summed, source = through(producer, eqn.invars[0])
    numerator, _ = through(producer, ctx.eqn.invars[0])
    return summed is numerator and source is not None and source.primitive.name == "exp"


def secret_division(ctx, x, y):
    """x / y for a secret y: ONE reciprocal of the divisor before any broadcast (softmax
    divides by ``broadcast_in_dim(row_sum)``: one reciprocal per row), then a product.
    A divisor ``sqrt(v)`` becomes ``rsqrt(v)``. In softmax's normalisation the quotient is
    at most 1, so the reciprocal is held ``ring_bits - 4 - frac_bits`` bits fine (42 at the
    defaults; every r <= 2^(1 + frac_bits) and every product <= 2 then fit) and the product
    is truncated once: at frac_bits, 1/s of a row sum s in the thousands (2Quad's) would
    keep only a few significant bits."""
    _float_out(ctx)
    pol = policy(ctx)
    var, value = ctx.eqn.invars[1], y
    found = ctx.producer(1)
    broadcast = None
    if (found is not None and found[0].primitive.name == "broadcast_in_dim"
            and not isinstance(found[1][0], Public)):
        broadcast = found[0]
        var, value = broadcast.invars[0], found[1][0]
    inner = var_producer(ctx, var)
    o = SecureOps(ctx)
    normalising = _normalises_rows(ctx, var)
    if inner is not None and inner[0].primitive.name == "sqrt" and not isinstance(
            inner[1][0], Public):
        r = approx.rsqrt(o, o.enter(inner[1][0]), pol.rsqrt)
    else:
        r = approx.reciprocal(o, o.enter(value), pol.reciprocal,
                              positive=normalising or _known_positive(ctx, var),
                              scale=ctx.ring.bits - 4 - o.frac_bits if normalising else None)
    if broadcast is not None:
        shares = ctx.protocol.local(
            local_primitive(broadcast.primitive, broadcast.params,
                            rank=len(ctx.protocol.logical_shape(r.shares))), r.shares)
        r = Fx(shares, r.scale)
    out_aval = ctx.out_avals[0]
    if normalising:
        return o.leave(o.mul(o.enter(x), r, scale=o.frac_bits), out_aval)
    reciprocal = o.leave(r, broadcast.outvars[0].aval if broadcast else var.aval)
    if (isinstance(x, Public) and np.all(np.asarray(x.value) == 1)
            and tuple(reciprocal.shape) == tuple(out_aval.shape)):
        return ctx.make(reciprocal.shares, out_aval)
    return apply_bilinear(ctx, MULTIPLY, x, reciprocal)


@register("pow")
def pow_rule(ctx, x, y, **_):
    """x ** y: a public exponent that is an integer or +-1/2 takes the integer power, sqrt
    or rsqrt rule; otherwise exp(y log x) (x > 0)."""
    _float_out(ctx)
    pol = policy(ctx)
    k = _public_scalar(y)
    if k is not None:
        if k == round(k):
            from secjax.primitives.arith import integer_power

            return integer_power(ctx, x, int(round(k)))
        if k == 0.5:
            return run_approx(ctx, x, lambda o, v: approx.sqrt(o, v, pol.rsqrt))
        if k == -0.5:
            return run_approx(ctx, x, lambda o, v: approx.rsqrt(o, v, pol.rsqrt))
        return run_approx(ctx, x, lambda o, v: approx.exp(
            o, o.mul_c(approx.log(o, v, pol.log), k), pol.exp))
    o = SecureOps(ctx)
    if isinstance(x, Public):
        logx = np.log(np.asarray(x.value, dtype=np.float64))
        # an integer exponent (optax's step count) is lifted to frac_bits first, or the
        # product with log x would be rounded to an integer
        exponent = o.enter(y)
        exponent = o.rescale(exponent, max(exponent.scale, o.frac_bits))
        out = approx.exp(o, o.mul_c(exponent, np.broadcast_to(logx, np.shape(logx))),
                         pol.exp)
    else:
        out = approx.exp(o, o.mul(o.enter(y), approx.log(o, o.enter(x), pol.log)), pol.exp)
    return o.leave(out, ctx.out_avals[0])
