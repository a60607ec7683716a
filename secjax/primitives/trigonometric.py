"""Rules for trigonometric and hyperbolic functions and ``expm1``: an approximation policy
like the others (:class:`secjax.primitives.policy.TrigPolicy`, with its domain and error).

- sin, cos, tan: range reduction of u = x / (2 pi) to its fractional part (exact in the
  ring: a truncation gives floor(u) or floor(u) + 1, one comparison removes the extra
  unit), then an odd polynomial of sin(pi t) on [-1, 1); cos(x) = sin(x + pi / 2), tan =
  sin / cos.
- atan, asin, acos, atan2: an odd polynomial of atan on [-1, 1], reached through 1 / |x|
  where |x| > 1 (atan x = pi / 2 - atan(1 / x)), and asin(x) = 2 atan(x / (1 + sqrt(1 -
  x^2))) whose argument stays in [-1, 1] (the divisor in [1, 2]).
- sinh, cosh: (e^x -+ e^-x) / 2 with the exp policy (both exponentials in one call: the
  absolute error is exp's); asinh(x) = sign(x) log(|x| + sqrt(x^2 + 1)), acosh(x) =
  log(x + sqrt(x^2 - 1)), atanh(x) = (log(1 + x) - log(1 - x)) / 2 with the log and sqrt
  policies, x^2 held in the ring for |x| < 2^12.
- expm1 = exp(x) - 1: exp's absolute error (not a relative one near 0, as in float).
"""

from __future__ import annotations

import math

from secjax.primitives import approx, register
from secjax.primitives.approx import Poly, fit_poly
from secjax.primitives.secure_ops import MULTIPLY, Fx, SecureOps, run_approx


def _odd_poly(target: str, degree: int) -> Poly:
    return Poly(fit_poly(target, -1.0, 1.0, tuple(range(1, degree + 1, 2))), 1.0)


def _turns(ops, x: Fx, max_abs: float, offset: float = 0.0) -> Fx:
    """u = x / (2 pi) + offset at the finest scale a product of |x| < max_abs allows."""
    c = 1.0 / (2.0 * math.pi)
    scale = ops.cofactor_scale(x, max_abs * c + 1.0)
    shares = ops.protocol.bilinear_public(MULTIPLY, x.shares, ops._encode(c, scale))
    u = Fx(shares, x.scale + scale)
    keep = min(u.scale, ops.ring.bits - 4 - math.ceil(math.log2(max_abs * c + 2.0)))
    return ops.add_c(ops.rescale(u, keep), offset)


def _reduced(ops, u: Fx) -> Fx:
    """t = 2 frac(u) - 1 in [-1, 1): sin(2 pi u) = -sin(pi t)."""
    whole = ops.rescale(u, 0)  # floor(u) or floor(u) + 1
    f = ops.sub(u, whole)  # in [-1, 1)
    negative = ops.bits_lin(ops.ge(f, [0.0]), [-1.0], 1.0, f.scale)  # [f < 0]
    f = ops.add(f, negative)  # in [0, 1)
    return ops.add_c(Fx(f.shares, f.scale - 1), -1.0)  # 2f - 1 (relabelling the scale)


def sin_cos(ops, x: Fx, p, *, which: tuple) -> list:
    """sin and/or cos of x (``which``: names in order)."""
    poly = _odd_poly("sin_pi", p.sin_degree)
    out = []
    for name in which:
        t = _reduced(ops, _turns(ops, x, p.max_abs, 0.25 if name == "cos" else 0.0))
        out.append(ops.neg(ops.polys(t, [poly])[0]))
    return out


def atan(ops, x: Fx, p, recip) -> Fx:
    """atan x for any x: the polynomial at min(|x|, 1 / |x|)."""
    poly = _odd_poly("atan", p.atan_degree)
    bits = ops.ge(x, [0.0])
    sign = ops.bits_lin(bits, [2.0], -1.0, 0)  # 1 - 2 [x < 0]
    a = ops.mul(sign, x, scale=x.scale)
    big = ops.take(ops.ge(a, [1.0]), 0)
    inverse = recip(a)
    t = ops.add(a, ops.mask_many([(big, ops.sub(inverse, a))])[0])
    v = ops.polys(t, [poly])[0]
    v = ops.add(v, ops.mask_many([(big, ops.add_c(ops.mul_c(v, -2.0), math.pi / 2))])[0])
    return ops.mul(sign, v, scale=v.scale)


def _register_approx(name, algorithm):
    @register(name)
    def rule(ctx, x, **_):
        return run_approx(ctx, x, lambda ops, v: algorithm(ops, v, ctx.policy))

    rule.__name__ = f"{name}_rule"
    rule.__doc__ = f"{name} (see the module docstring)."
    return rule


def _recip(pol):
    return lambda ops, y: approx.reciprocal(ops, y, pol.reciprocal, positive=True)


_register_approx("sin", lambda ops, x, pol: sin_cos(ops, x, pol.trig, which=("sin",))[0])
_register_approx("cos", lambda ops, x, pol: sin_cos(ops, x, pol.trig, which=("cos",))[0])


def _tan(ops, x, pol):
    s, c = sin_cos(ops, x, pol.trig, which=("sin", "cos"))
    return ops.mul(s, approx.reciprocal(ops, c, pol.reciprocal))


def _atan(ops, x, pol):
    return atan(ops, x, pol.trig, lambda a: _recip(pol)(ops, a))


def _asin(ops, x, pol):
    root = approx.sqrt(ops, ops.add_c(ops.neg(ops.mul(x, x)), 1.0), pol.rsqrt)
    ratio = ops.mul(x, _recip(pol)(ops, ops.add_c(root, 1.0)))
    return ops.mul_c(_atan(ops, ratio, pol), 2.0)


def _acos(ops, x, pol):
    return ops.add_c(ops.neg(_asin(ops, x, pol)), math.pi / 2)


def _exp_pair(ops, x, pol):
    e = approx.exp(ops, Fx(ops.protocol.stack(x.shares, ops.neg(x).shares), x.scale), pol.exp)
    return Fx(ops.protocol.index(e.shares, 0), e.scale), Fx(
        ops.protocol.index(e.shares, 1), e.scale
    )


def _sinh(ops, x, pol):
    plus, minus = _exp_pair(ops, x, pol)
    return ops.mul_c(ops.sub(plus, minus), 0.5)


def _cosh(ops, x, pol):
    plus, minus = _exp_pair(ops, x, pol)
    return ops.mul_c(ops.add(plus, minus), 0.5)


def _asinh(ops, x, pol):
    sign = ops.bits_lin(ops.ge(x, [0.0]), [2.0], -1.0, 0)
    a = ops.mul(sign, x, scale=x.scale)
    root = approx.sqrt(ops, ops.add_c(ops.mul(a, a), 1.0), pol.rsqrt)
    return ops.mul(sign, approx.log(ops, ops.add(a, root), pol.log))


def _acosh(ops, x, pol):
    root = approx.sqrt(ops, ops.add_c(ops.mul(x, x), -1.0), pol.rsqrt)
    return approx.log(ops, ops.add(x, root), pol.log)


def _atanh(ops, x, pol):
    both = approx.log(
        ops,
        Fx(
            ops.protocol.stack(ops.add_c(x, 1.0).shares, ops.add_c(ops.neg(x), 1.0).shares), x.scale
        ),
        pol.log,
    )
    return ops.mul_c(
        ops.sub(
            Fx(ops.protocol.index(both.shares, 0), both.scale),
            Fx(ops.protocol.index(both.shares, 1), both.scale),
        ),
        0.5,
    )


for _name, _algorithm in (
    ("tan", _tan),
    ("atan", _atan),
    ("asin", _asin),
    ("acos", _acos),
    ("sinh", _sinh),
    ("cosh", _cosh),
    ("asinh", _asinh),
    ("acosh", _acosh),
    ("atanh", _atanh),
    ("expm1", lambda ops, x, pol: ops.add_c(approx.exp(ops, x, pol.exp), -1.0)),
):
    _register_approx(_name, _algorithm)


@register("atan2")
def atan2_rule(ctx, y, x, **_):
    """atan2(y, x) = atan(y / x) + [x < 0] pi (1 - 2 [y < 0])."""
    pol = ctx.policy
    ops = SecureOps(ctx)
    fy, fx = ops.enter(y), ops.enter(x)
    ratio = ops.mul(fy, approx.reciprocal(ops, fx, pol.reciprocal))
    base = _atan(ops, ratio, pol)
    x_negative = ops.bits_lin(ops.ge(fx, [0.0]), [-1.0], 1.0, 0)
    turn = ops.bits_lin(ops.ge(fy, [0.0]), [2.0 * math.pi], -math.pi, None)  # +-pi
    return ops.leave(ops.add(base, ops.mask_many([(x_negative, turn)])[0]), ctx.out_avals[0])
