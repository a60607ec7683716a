"""Rules for trigonometric and hyperbolic functions and ``expm1``: an approximation policy
like the others (:class:`secjax.primitives.policy.TrigPolicy`, with its domain and error).

- sin, cos, tan: range reduction of u = x / (2 pi) to its fractional part (exact in the
  ring: a truncation gives floor(u) or floor(u) + 1, one comparison removes the extra
  unit), then an odd polynomial of sin(pi t) on [-1, 1). sin and cos of one input share
  one set of powers for tan.
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


def _turns(o, x: Fx, max_abs: float, offset: float = 0.0) -> Fx:
    """u = x / (2 pi) + offset at the finest scale a product of |x| < max_abs allows."""
    c = 1.0 / (2.0 * math.pi)
    scale = o.cofactor_scale(x, max_abs * c + 1.0)
    shares = o.p.bilinear_public(MULTIPLY, x.shares, o._encode(c, scale))
    u = Fx(shares, x.scale + scale)
    keep = min(u.scale, o.ring.bits - 4 - math.ceil(math.log2(max_abs * c + 2.0)))
    return o.add_c(o.rescale(u, keep), offset)


def _reduced(o, u: Fx) -> Fx:
    """t = 2 frac(u) - 1 in [-1, 1): sin(2 pi u) = -sin(pi t)."""
    whole = o.rescale(u, 0)                           # floor(u) or floor(u) + 1
    f = o.sub(u, whole)                               # in [-1, 1)
    negative = o.bits_lin(o.ge(f, [0.0]), [-1.0], 1.0, f.scale)      # [f < 0]
    f = o.add(f, negative)                            # in [0, 1)
    return o.add_c(Fx(f.shares, f.scale - 1), -1.0)  # 2f - 1 (relabelling the scale)


def sin_cos(o, x: Fx, p, *, which: tuple) -> list:
    """sin and/or cos of x (``which``: names in order)."""
    poly = _odd_poly("sin_pi", p.sin_degree)
    out = []
    for name in which:
        t = _reduced(o, _turns(o, x, p.max_abs, 0.25 if name == "cos" else 0.0))
        out.append(o.neg(o.polys(t, [poly])[0]))
    return out


def atan(o, x: Fx, p, recip) -> Fx:
    """atan x for any x: the polynomial at min(|x|, 1 / |x|)."""
    poly = _odd_poly("atan", p.atan_degree)
    bits = o.ge(x, [0.0])
    sign = o.bits_lin(bits, [2.0], -1.0, 0)           # 1 - 2 [x < 0]
    a = o.mul(sign, x, scale=x.scale)
    big = o.take(o.ge(a, [1.0]), 0)
    inverse = recip(a)
    t = o.add(a, o.mask_many([(big, o.sub(inverse, a))])[0])
    v = o.polys(t, [poly])[0]
    v = o.add(v, o.mask_many([(big, o.add_c(o.mul_c(v, -2.0), math.pi / 2))])[0])
    return o.mul(sign, v, scale=v.scale)


def _register_approx(name, algorithm):
    @register(name)
    def rule(ctx, x, **_):
        return run_approx(ctx, x, lambda o, v: algorithm(o, v, ctx.policy))
    rule.__name__ = f"{name}_rule"
    rule.__doc__ = f"{name} (see the module docstring)."
    return rule


def _recip(pol):
    return lambda o, y: approx.reciprocal(o, y, pol.reciprocal, positive=True)


_register_approx("sin", lambda o, x, pol: sin_cos(o, x, pol.trig, which=("sin",))[0])
_register_approx("cos", lambda o, x, pol: sin_cos(o, x, pol.trig, which=("cos",))[0])


def _tan(o, x, pol):
    s, c = sin_cos(o, x, pol.trig, which=("sin", "cos"))
    return o.mul(s, approx.reciprocal(o, c, pol.reciprocal))


def _atan(o, x, pol):
    return atan(o, x, pol.trig, lambda a: _recip(pol)(o, a))


def _asin(o, x, pol):
    root = approx.sqrt(o, o.add_c(o.neg(o.mul(x, x)), 1.0), pol.rsqrt)
    ratio = o.mul(x, _recip(pol)(o, o.add_c(root, 1.0)))
    return o.mul_c(_atan(o, ratio, pol), 2.0)


def _acos(o, x, pol):
    return o.add_c(o.neg(_asin(o, x, pol)), math.pi / 2)


def _exp_pair(o, x, pol):
    e = approx.exp(o, Fx(o.p.stack(x.shares, o.neg(x).shares), x.scale), pol.exp)
    return Fx(o.p.index(e.shares, 0), e.scale), Fx(o.p.index(e.shares, 1), e.scale)


def _sinh(o, x, pol):
    plus, minus = _exp_pair(o, x, pol)
    return o.mul_c(o.sub(plus, minus), 0.5)


def _cosh(o, x, pol):
    plus, minus = _exp_pair(o, x, pol)
    return o.mul_c(o.add(plus, minus), 0.5)


def _asinh(o, x, pol):
    sign = o.bits_lin(o.ge(x, [0.0]), [2.0], -1.0, 0)
    a = o.mul(sign, x, scale=x.scale)
    root = approx.sqrt(o, o.add_c(o.mul(a, a), 1.0), pol.rsqrt)
    return o.mul(sign, approx.log(o, o.add(a, root), pol.log))


def _acosh(o, x, pol):
    root = approx.sqrt(o, o.add_c(o.mul(x, x), -1.0), pol.rsqrt)
    return approx.log(o, o.add(x, root), pol.log)


def _atanh(o, x, pol):
    both = approx.log(o, Fx(o.p.stack(o.add_c(x, 1.0).shares,
                                      o.add_c(o.neg(x), 1.0).shares), x.scale), pol.log)
    return o.mul_c(o.sub(Fx(o.p.index(both.shares, 0), both.scale),
                         Fx(o.p.index(both.shares, 1), both.scale)), 0.5)


for _name, _algorithm in (("tan", _tan), ("atan", _atan), ("asin", _asin), ("acos", _acos),
                          ("sinh", _sinh), ("cosh", _cosh), ("asinh", _asinh),
                          ("acosh", _acosh), ("atanh", _atanh),
                          ("expm1", lambda o, x, pol: o.add_c(approx.exp(o, x, pol.exp), -1.0))):
    _register_approx(_name, _algorithm)


@register("atan2")
def atan2_rule(ctx, y, x, **_):
    """atan2(y, x) = atan(y / x) + [x < 0] pi (1 - 2 [y < 0])."""
    pol = ctx.policy
    o = SecureOps(ctx)
    fy, fx = o.enter(y), o.enter(x)
    ratio = o.mul(fy, approx.reciprocal(o, fx, pol.reciprocal))
    base = _atan(o, ratio, pol)
    x_negative = o.bits_lin(o.ge(fx, [0.0]), [-1.0], 1.0, 0)
    turn = o.bits_lin(o.ge(fy, [0.0]), [2.0 * math.pi], -math.pi, None)   # +-pi
    return o.leave(o.add(base, o.mask_many([(x_negative, turn)])[0]), ctx.out_avals[0])
