"""Rules for the primitives that differentiation introduces: ``add_any`` (the sum of two
cotangents, which ``jax.grad`` emits wherever a value is used twice) and ``is_finite`` (which
``jax.nn.logsumexp`` and optax's losses apply to a row maximum before subtracting it).

Both are cheap: ``add_any`` is a local sum of shares; ``is_finite`` is the public constant
True, because a ring value is always finite (fixed-point encodings have no infinity and no
NaN; an input's infinities are saturated or refused when it is encoded), so the answer
depends on no secret and reveals nothing.
"""

from __future__ import annotations

import jax.numpy as jnp

from secjax.primitives import register
from secjax.values import DeferredSecret, Public


@register("add_any")
def add_any_rule(ctx, x, y, **_):
    """x + y of two cotangents (local). A sum with a deferred operand not computed yet is
    deferred too, as for ``add``."""

    def compute():
        return ctx.protocol.add(ctx.secret(x).shares, ctx.secret(y).shares)

    if any(isinstance(v, DeferredSecret) and v.pending for v in (x, y)):
        return ctx.deferred(compute, ctx.out_avals[0])
    return ctx.make(compute(), ctx.out_avals[0])


@register("is_finite")
def is_finite_rule(ctx, x, **_):
    """True everywhere: every ring value is finite (see the module docstring), so the result
    is public and free."""
    aval = ctx.out_avals[0]
    return Public(jnp.ones(aval.shape, aval.dtype))
