"""MPC-friendly network functions (GeLU, SiLU, softmax, norms), in plain JAX.

The functions here are plain JAX (float in, float out): each runs the same description of its
approximation (``secjax.primitives.approx``, parameters from a :class:`Policy`) as the secure
rules do, so a model can be trained or fine-tuned in the clear with exactly what runs
securely. They differ from the secure results only by fixed-point rounding.

    import secjax.nn
    y = secjax.nn.gelu(x)                     # PUMA's piecewise GeLU, as under secure_jit
    y = secjax.nn.softmax(x, axis=-1)         # clipped exp, one reciprocal per row

Under ``secure_jit`` the same approximations replace JAX's own functions where they are
found in a jaxpr (:mod:`secjax.primitives.patterns`).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from secjax.primitives import approx
from secjax.primitives.approx import FloatOps
from secjax.primitives.policy import DEFAULT_POLICY, Policy, SoftmaxPolicy

__all__ = [
    "Policy",
    "SoftmaxPolicy",
    "DEFAULT_POLICY",
    "exp",
    "log",
    "reciprocal",
    "rsqrt",
    "sqrt",
    "logistic",
    "sigmoid",
    "tanh",
    "erf",
    "gelu",
    "silu",
    "swish",
    "softmax",
    "log_softmax",
    "layer_norm",
    "rms_norm",
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


def layer_norm(
    x, scale=None, bias=None, eps: float = 1e-6, axis: int = -1, policy: Policy | None = None
):
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
