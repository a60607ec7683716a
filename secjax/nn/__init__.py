"""MPC-friendly network functions (GeLU, SiLU, softmax, norms) and the overrides that put
them in place of the named functions they replace in a jaxpr.

The functions here are plain JAX (float in, float out): each runs the same description of its
approximation (``secjax.primitives.approx``, parameters from a :class:`Policy`) as the secure
rules do, so a model can be trained or fine-tuned in the clear with exactly what runs
securely. They differ from the secure results only by fixed-point rounding.

    import secjax.nn
    y = secjax.nn.gelu(x)                     # PUMA's piecewise GeLU, as under secure_jit
    y = secjax.nn.softmax(x, axis=-1)         # clipped exp, one reciprocal per row

Two kinds of replacement put them in place in a jaxpr: :data:`OVERRIDES` replace a named
``jit`` (``jax.nn.silu``) as a whole; :func:`substitutions` recognise an inlined pattern
(``jax.nn.softmax`` under the 2Quad policy) and say which equation computes what from which
inputs, so that the equations only the replaced ones needed (the row max) are never run.
"""
from __future__ import annotations

import collections
import dataclasses
import math
from typing import Callable

import jax
import jax.numpy as jnp
from jax.extend.core import Literal

from secjax.primitives import approx
from secjax.primitives.approx import FloatOps
from secjax.primitives.policy import DEFAULT_POLICY, Policy, SoftmaxPolicy
from secjax.primitives.transcendental import minus_rowmax_source, run_approx, through
from secjax.primitives.transcendental import policy as ctx_policy

__all__ = [
    "OVERRIDES", "Policy", "SoftmaxPolicy", "DEFAULT_POLICY", "Substitution",
    "substitutions", "exp", "log", "reciprocal", "rsqrt", "sqrt",
    "logistic", "sigmoid", "tanh", "erf", "gelu", "silu", "swish", "softmax", "log_softmax",
    "layer_norm", "rms_norm",
]

_OPS = FloatOps()


def _p(policy):
    return policy or DEFAULT_POLICY


def _float(x):
    x = jnp.asarray(x)
    return x if jnp.issubdtype(x.dtype, jnp.floating) else x.astype(jnp.float32)


def exp(x, policy: Policy | None = None):
    return approx.exp(_OPS, _float(x), _p(policy).exp)


def log(x, policy: Policy | None = None):
    return approx.log(_OPS, _float(x), _p(policy).log)


def reciprocal(x, policy: Policy | None = None):
    return approx.reciprocal(_OPS, _float(x), _p(policy).reciprocal)


def rsqrt(x, policy: Policy | None = None):
    return approx.rsqrt(_OPS, _float(x), _p(policy).rsqrt)


def sqrt(x, policy: Policy | None = None):
    return approx.sqrt(_OPS, _float(x), _p(policy).rsqrt)


def logistic(x, policy: Policy | None = None):
    return approx.piecewise(_OPS, _float(x), approx.logistic_pieces(_p(policy).tanh))


sigmoid = logistic


def tanh(x, policy: Policy | None = None):
    return approx.piecewise(_OPS, _float(x), approx.odd_sigmoid_pieces("tanh", _p(policy).tanh))


def erf(x, policy: Policy | None = None):
    return approx.piecewise(_OPS, _float(x), approx.odd_sigmoid_pieces("erf", _p(policy).erf))


def gelu(x, approximate: bool = False, policy: Policy | None = None):
    """GeLU as it runs securely: x * Phi(x) with the policy's piecewise Phi (both jax.nn.gelu
    forms are replaced by the same function; ``approximate`` is accepted for symmetry)."""
    x = _float(x)
    pol = _p(policy)
    if pol.gelu.method == "erf":
        erfc = approx.odd_sigmoid_pieces("erf", pol.erf).scaled(-1.0, 1.0)
        return 0.5 * x * approx.piecewise(_OPS, x * (-1.0 / math.sqrt(2.0)), erfc)
    return x * approx.piecewise(_OPS, x, approx.gelu_phi_pieces(pol.gelu))


def silu(x, policy: Policy | None = None):
    x = _float(x)
    pol = _p(policy)
    if pol.silu.method == "logistic":
        return x * logistic(x, pol)
    return approx.piecewise(_OPS, x, approx.silu_pieces(pol.silu))


swish = silu


def softmax(x, axis: int = -1, policy: Policy | None = None):
    """The policy's softmax (:class:`SoftmaxPolicy`): exp(x - max) (exactly 0 below the
    policy's exp.lo), or 2Quad's relu(x + c)^2; times ONE reciprocal per row."""
    x = _float(x)
    pol = _p(policy)
    if pol.softmax.method == "2quad":
        e = approx.quad_numerator(_OPS, x, pol.softmax)
    else:
        shifted = x - jax.lax.stop_gradient(jnp.max(x, axis, keepdims=True))
        e = approx.exp(_OPS, shifted, pol.exp, nonpositive=True)
    total = jnp.sum(e, axis, keepdims=True)
    return e * approx.reciprocal(_OPS, total, pol.reciprocal, positive=True)


def log_softmax(x, axis: int = -1, policy: Policy | None = None):
    x = _float(x)
    shifted = x - jax.lax.stop_gradient(jnp.max(x, axis, keepdims=True))
    pol = _p(policy)
    total = jnp.sum(approx.exp(_OPS, shifted, pol.exp, nonpositive=True), axis, keepdims=True)
    return shifted - approx.log(_OPS, total, pol.log)


def layer_norm(x, scale=None, bias=None, eps: float = 1e-6, axis: int = -1,
               policy: Policy | None = None):
    """(x - mean) * rsqrt(var + eps) with ONE rsqrt per row (Flax LayerNorm's formula)."""
    x = _float(x)
    mean = jnp.mean(x, axis, keepdims=True)
    var = jnp.maximum(jnp.mean(x * x, axis, keepdims=True) - mean * mean, 0.0)
    y = (x - mean) * rsqrt(var + eps, policy)
    if scale is not None:
        y = y * scale
    return y + bias if bias is not None else y


def rms_norm(x, scale=None, eps: float = 1e-6, axis: int = -1, policy: Policy | None = None):
    x = _float(x)
    y = x * rsqrt(jnp.mean(x * x, axis, keepdims=True) + eps, policy)
    return y * scale if scale is not None else y


# -- overrides of named jits in a jaxpr ---------------------------------------------------------


def _silu_override(ctx, x, **params):
    """``jax.nn.silu`` (a jit named "silu"): the policy's piecewise SiLU, one comparison
    call, one product call."""
    pol = ctx_policy(ctx).silu
    if pol.method == "logistic":
        return ctx.eval_jaxpr(params["jaxpr"], [x])
    pieces = approx.silu_pieces(pol)
    return [run_approx(ctx, x, lambda o, v: approx.piecewise(o, v, pieces))]


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
    pol = ctx_policy(ctx).softmax
    return run_approx(ctx, a, lambda o, v: approx.quad_numerator(o, v, pol))


def _static_producer(jaxpr):
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
    return all(d.invars[0] is var and d.invars[1] is not var
               and any(through(producer, d.invars[1])[1] is s for s in sums) for d in divs)


def substitutions(jaxpr, policy: Policy | None = None) -> dict[int, Substitution]:
    """Substitutions (by equation index) that the policy asks for in ``jaxpr``.

    Under the 2Quad softmax (``policy.softmax.method == "2quad"``), every softmax numerator
    ``exp(a - max(a))`` that is only summed and divided by its sum (``jax.nn.softmax``, also
    inside Flax attention) is computed as relu(a + c)^2 from ``a`` itself; its row max and
    shift are then dead and never run. exp used otherwise (log_softmax) keeps its rule."""
    pol = _p(policy).softmax
    if pol.method != "2quad":
        return {}
    producer, public = _static_producer(jaxpr), _static_public(jaxpr)
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
            return [approx.quad_numerator(_OPS, _float(x), pol).astype(dtype)]

        found[i] = Substitution(_quad_numerator_rule, clear, (a,), "softmax:2quad")
    return found
