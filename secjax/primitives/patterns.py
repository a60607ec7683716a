"""Patterns in jaxprs that secjax computes better as a whole, and how to see them.

A rule sees the equations computed so far through ``ctx.producer(operand or var)``; a look
at a whole jaxpr before it runs uses :func:`static_producer`; :func:`through` follows either
back through shape-only equations. On these:

- recognisers that let a rule take a cheaper path: softmax's ``exp(a - max(a))`` (its
  argument is <= 0), a softmax denominator (a sum of exponentials, positive), softmax's
  normalisation (a quotient in [0, 1]), and the inner arguments of GeLU written with erf or
  tanh (replaced by the GeLU's own pieces);
- :data:`OVERRIDES`: rules for named ``jit`` calls replaced as a whole (``jax.nn.silu``);
- :func:`substitutions`: equations the policy computes from other inputs (the 2Quad
  softmax's numerator from ``a`` itself), so that what only they needed is never run.
"""

from __future__ import annotations

import collections
import dataclasses
import math
from typing import Callable

import jax.numpy as jnp
import numpy as np
from jax.extend.core import Literal

from secjax.primitives import approx
from secjax.primitives.approx import FloatOps
from secjax.primitives.policy import DEFAULT_POLICY, Policy
from secjax.primitives.secure_ops import run_approx
from secjax.values import Public

_FLOAT_OPS = FloatOps()


def public_scalar(value):
    if isinstance(value, Public) and np.size(value.value) == 1:
        return float(np.asarray(value.value, dtype=np.float64).reshape(()))
    return None


def _split_scalar_mul(found):
    """For ``mul(v, k)`` / ``mul(k, v)`` with a public scalar k: (k, var of v, v)."""
    if found is None or found[0].primitive.name != "mul":
        return None
    eqn, values = found
    for i in (0, 1):
        k = public_scalar(values[i])
        if k is not None and public_scalar(values[1 - i]) is None:
            return k, eqn.invars[1 - i], values[1 - i]
    return None


_TRANSPARENT = (
    "broadcast_in_dim",
    "reshape",
    "copy",
    "stop_gradient",
    "squeeze",
    "convert_element_type",
)


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
    found = inner is not None and inner.primitive.name == "reduce_max" and inner.invars[0] is a_var
    return a_var if found else None


def equations_of(ctx):
    """The ``producer`` of :func:`through` over the equations a rule has seen so far."""
    return lambda var: (ctx.producer(var) or (None,))[0]


def is_minus_rowmax(ctx) -> bool:
    """Whether the operand of the current equation is ``a - max(a)`` (softmax)."""

    def public(eqn, i):
        return isinstance(ctx.producers[eqn.outvars[0]][1][i], Public)

    return minus_rowmax_source(equations_of(ctx), ctx.eqn.invars[0], public) is not None


def known_positive(ctx, var) -> bool:
    """Whether ``var`` is a sum of exponentials (or an exponential): softmax denominators.
    (Under the 2Quad softmax the exp equation computes relu(x + c)^2 >= 0: a sum of 0
    saturates the reciprocal and multiplies zeros, so the sign comparison is not needed.)"""
    producer = equations_of(ctx)
    _, eqn = through(producer, var)
    if eqn is not None and eqn.primitive.name == "reduce_sum":
        _, eqn = through(producer, eqn.invars[0])
    return eqn is not None and eqn.primitive.name == "exp"


_GELU_ERF = -1.0 / math.sqrt(2.0)
_GELU_TANH = (math.sqrt(2.0 / math.pi), 0.044715)


def gelu_erf_input(ctx):
    """x if the current erfc's argument is -x / sqrt 2 (exact GeLU), else None."""
    split = _split_scalar_mul(ctx.producer(0))
    if split is None:
        return None
    k, var, value = split
    if abs(k - _GELU_ERF) < 1e-6:
        return value
    if abs(k + _GELU_ERF) < 1e-6:
        found = ctx.producer(var)
        if found is not None and found[0].primitive.name == "neg":
            return found[1][0]
    return None


def gelu_tanh_input(ctx):
    """x if the current tanh's argument is c (x + 0.044715 x^3) (tanh GeLU), else None."""
    split = _split_scalar_mul(ctx.producer(0))
    if split is None or abs(split[0] - _GELU_TANH[0]) > 1e-6:
        return None
    found = ctx.producer(split[1])
    if found is None or found[0].primitive.name != "add":
        return None
    eqn, values = found
    for i in (0, 1):
        cubic = _split_scalar_mul(ctx.producer(eqn.invars[1 - i]))
        if cubic is None or abs(cubic[0] - _GELU_TANH[1]) > 1e-6:
            continue
        power = ctx.producer(cubic[1])
        if (
            power is not None
            and power[0].primitive.name == "integer_pow"
            and power[0].params.get("y") == 3
            and power[0].invars[0] is eqn.invars[i]
        ):
            return values[i]
    return None


def normalises_rows(ctx, var) -> bool:
    """Whether the current ``div`` is ``e / s`` with ``s`` (``var``, before its broadcast) the
    sum of ``e`` and ``e`` an exponential: softmax's normalisation, a quotient in [0, 1]."""
    producer = equations_of(ctx)
    _, eqn = through(producer, var)
    if eqn is None or eqn.primitive.name != "reduce_sum":
        return False
    summed, source = through(producer, eqn.invars[0])
    numerator, _ = through(producer, ctx.eqn.invars[0])
    return summed is numerator and source is not None and source.primitive.name == "exp"


# -- overrides of named jits in a jaxpr ---------------------------------------------------------


def _silu_override(ctx, x, **params):
    """``jax.nn.silu`` (a jit named "silu"): the policy's piecewise SiLU, one comparison
    call, one product call."""
    pol = ctx.policy.silu
    if pol.method == "logistic":
        return ctx.eval_jaxpr(params["jaxpr"], [x])
    pieces = approx.silu_pieces(pol)
    return [run_approx(ctx, x, lambda ops, v: approx.piecewise(ops, v, pieces))]


# Rules keyed by the name of the ``jit`` they replace as a whole (e.g. "silu").
OVERRIDES: dict[str, Callable] = {"silu": _silu_override}


# -- substitutions of patterns in a jaxpr -------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Substitution:
    """Compute an equation's outputs from ``invars`` (variables of the same jaxpr) instead of
    from its own operands: ``rule(ctx, *values)`` when any is secret, returning what the
    equation's own rule would (``ctx.eqn`` is still the replaced equation, so its output
    avals apply); ``clear(*arrays)`` (a list of outputs) when all are public or held by one
    party. ``label`` names it in cost reports."""

    rule: Callable
    clear: Callable
    invars: tuple
    label: str


def _quad_numerator_rule(ctx, a):
    pol = ctx.policy.softmax
    return run_approx(ctx, a, lambda ops, v: approx.quad_numerator(ops, v, pol))


def static_producer(jaxpr):
    """The ``producer`` of :func:`through` over a whole jaxpr (before any rule runs)."""
    eqns = {var: eqn for eqn in jaxpr.eqns for var in eqn.outvars}
    return eqns.get


def _static_public(jaxpr):
    """Operands known public from the jaxpr alone: literals and its constants."""
    consts = set(jaxpr.constvars)
    return lambda eqn, i: isinstance(eqn.invars[i], Literal) or eqn.invars[i] in consts


def _normalised_by_row_sum(producer, users, var) -> bool:
    """Whether every use of ``var`` is its sum, or a division of ``var`` by (a broadcast of)
    that sum: softmax's numerator."""
    uses = users[var]
    sums = [u for u in uses if u.primitive.name == "reduce_sum"]
    divs = [u for u in uses if u.primitive.name == "div"]
    if not divs or len(sums) + len(divs) != len(uses):
        return False
    return all(
        d.invars[0] is var
        and d.invars[1] is not var
        and any(through(producer, d.invars[1])[1] is s for s in sums)
        for d in divs
    )


def substitutions(jaxpr, policy: Policy | None = None) -> dict[int, Substitution]:
    """Substitutions (by equation index) that the policy asks for in ``jaxpr``.

    Under the 2Quad softmax (``policy.softmax.method == "2quad"``), every softmax numerator
    ``exp(a - max(a))`` that is only summed and divided by its sum (``jax.nn.softmax``, also
    inside Flax attention) is computed as relu(a + c)^2 from ``a`` itself; its row max and
    shift are then dead and never run. exp used otherwise (log_softmax) keeps its rule."""
    pol = (policy or DEFAULT_POLICY).softmax
    if pol.method != "2quad":
        return {}
    producer, public = static_producer(jaxpr), _static_public(jaxpr)
    users = collections.defaultdict(list)
    for eqn in jaxpr.eqns:
        for var in eqn.invars:
            if not isinstance(var, Literal):
                users[var].append(eqn)
    outputs = {v for v in jaxpr.outvars if not isinstance(v, Literal)}
    found = {}
    for i, eqn in enumerate(jaxpr.eqns):
        if eqn.primitive.name != "exp" or eqn.outvars[0] in outputs:
            continue
        a = minus_rowmax_source(producer, eqn.invars[0], public)
        if a is None or not _normalised_by_row_sum(producer, users, eqn.outvars[0]):
            continue
        dtype = eqn.outvars[0].aval.dtype

        def clear(x, dtype=dtype):
            return [approx.quad_numerator(_FLOAT_OPS, jnp.asarray(x, dtype), pol)]

        found[i] = Substitution(_quad_numerator_rule, clear, (a,), "softmax:2quad")
    return found
