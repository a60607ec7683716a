"""Rules for floor, ceil and round of secret fixed-point values: exact, not within one unit.

A secret float is an integer X at scale d (x = X / 2^d). Truncating it by d bits gives
t = floor(x) or floor(x) + 1 (the protocols' probabilistic truncation,
:mod:`secjax.protocols.common`; plain's is exact), and since t 2^d <= X exactly when
t = floor(x), ONE comparison removes the extra unit: floor(x) = t - [X - t 2^d < 0].

- ceil(x) = -floor(-x).
- round half away from zero (``lax.RoundingMethod.AWAY_FROM_ZERO``): floor(x + 1/2) for
  x >= 0, -floor(-x + 1/2) below: both floors stacked in one truncation, their two
  corrections and the sign of x in one comparison call, one product to choose.
- round half to even (``TO_NEAREST_EVEN``, ``jnp.round``): with q = floor((x + 1/2) / 2)
  and s = x - 2q in [-1/2, 3/2), round(x) = 2q + [s > 1/2] (the ties x = 2q +- 1/2 go to
  2q). Truncating X + 2^(d-1) by d + 1 bits gives q or q + 1; for q + 1, s is 2 less,
  so 2t + g(s) with g = -2 + [s > -3/2] + [s >= -1/2] + [s > 1/2] is right in both cases:
  one truncation and three comparisons in ONE call (two calls, a floor and then [s > 1/2],
  would send 120 bytes per element less under aby3 but take 10 rounds more).

Under aby3 (64-bit ring) floor and ceil send 136 bytes per element in 12 rounds, round
376 (to even) or 400 (away from zero) bytes in 12 or 13 rounds.

Exact for |x| < 2^(ring_bits - 3 - d) (2^43 at the defaults), within truncation's range
as every truncation in secjax must be (inputs themselves may reach 2^45 there).
"""

from __future__ import annotations

import numpy as np
from jax import lax

from secjax import ring as ring_ops
from secjax.primitives import register
from secjax.protocols.base import MULTIPLY


def _secret_float(ctx, x):
    """Shares of ``x`` and its scale d (lax admits floats only: the output has that scale)."""
    secret = ctx.secret(x)
    return secret.shares, ctx.scale(secret.dtype)


def _public(ctx, value: float, scale: int):
    """The public constant ``value`` at ``scale``, in the output's shape."""
    encoded = ring_ops.encode(ctx.ring, np.float64(value), scale)
    return np.broadcast_to(encoded, tuple(ctx.out_avals[0].shape))


def _rows(protocol, stacked, n: int) -> list:
    return [protocol.index(stacked, i) for i in range(n)]


def _floors(ctx, values, d: int, also=()):
    """Exact floor(v / 2^d) (integers at scale 0) of each of ``values`` (shares of one shape)
    by one truncation, and [a < 0] of each of ``also``: every comparison in ONE msb call."""
    protocol = ctx.protocol
    stacked = protocol.stack(*values)
    t = protocol.trunc(stacked, d)
    excess = _rows(protocol, protocol.sub(stacked, protocol.scale_up(t, d)), len(values))
    signs = _rows(protocol, protocol.msb(protocol.stack(*excess, *also)), len(values) + len(also))
    floors = [protocol.sub(ti, si) for ti, si in zip(_rows(protocol, t, len(values)), signs)]
    return floors, signs[len(values) :]


def _finish(ctx, integer, d: int):
    """The float output holding the integer shares ``integer`` (rescaled to scale d)."""
    return ctx.make(ctx.protocol.scale_up(integer, d), ctx.out_avals[0])


@register("floor", "ceil")
def floor_ceil_rule(ctx, x, **_):
    """floor(x) = t - [x < t] for the truncation t; ceil(x) = -floor(-x)."""
    shares, d = _secret_float(ctx, x)
    if d == 0:
        return ctx.make(shares, ctx.out_avals[0])
    protocol = ctx.protocol
    if ctx.primitive == "floor":
        (floor,), _ = _floors(ctx, [shares], d)
        return _finish(ctx, floor, d)
    (floor,), _ = _floors(ctx, [protocol.neg(shares)], d)
    return _finish(ctx, protocol.neg(floor), d)


@register("round")
def round_rule(ctx, x, *, rounding_method, **_):
    """Round to the nearest integer, ties away from zero or to even (module docstring)."""
    shares, d = _secret_float(ctx, x)
    if d == 0:
        return ctx.make(shares, ctx.out_avals[0])
    protocol = ctx.protocol
    half = _public(ctx, 0.5, d)
    method = lax.RoundingMethod(int(rounding_method))
    if method == lax.RoundingMethod.AWAY_FROM_ZERO:
        (up, down), (negative,) = _floors(
            ctx,
            [protocol.add_public(shares, half), protocol.add_public(protocol.neg(shares), half)],
            d,
            also=[shares],
        )
        # up + [x < 0] (-down - up)
        moved = protocol.bilinear(MULTIPLY, negative, protocol.neg(protocol.add(up, down)))
        return _finish(ctx, protocol.add(up, moved), d)
    if method == lax.RoundingMethod.TO_NEAREST_EVEN:
        t = protocol.trunc(protocol.add_public(shares, half), d + 1)
        s = protocol.sub(shares, protocol.scale_up(t, d + 1))  # x - 2t at scale d
        # [s > -3/2] = msb(-3/2 - s), [s >= -1/2] = 1 - msb(s + 1/2), [s > 1/2] = msb(1/2 - s)
        above_low, below_mid, above_high = _rows(
            protocol,
            protocol.msb(
                protocol.stack(
                    protocol.add_public(protocol.neg(s), _public(ctx, -1.5, d)),
                    protocol.add_public(s, half),
                    protocol.add_public(protocol.neg(s), half),
                )
            ),
            3,
        )
        g = protocol.add_public(
            protocol.add(protocol.sub(above_low, below_mid), above_high), _public(ctx, -1.0, 0)
        )  # -2 + above_low + (1 - below_mid) + ...
        return _finish(ctx, protocol.add(protocol.add(t, t), g), d)
    raise ctx.unsupported(
        f"rounding method {method.name} has no secure rule "
        "(AWAY_FROM_ZERO and TO_NEAREST_EVEN have)"
    )
