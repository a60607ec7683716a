"""Nonlinear functions in every ring configuration: each one accurate to a tolerance derived
from the configuration, or saturating where its documentation says so.

References are float64 functions of the ENCODED inputs (x rounded to frac_bits), so that the
input's own quantisation (y = 0.01 is 3/256 at 8 fractional bits: 17% off) is not charged to
the approximation. A tolerance (min(|abs|, |rel|) error, pointwise) is

    approx + c * 2^-bits_eff,   bits_eff = min(frac_bits, ring limit of the algorithm)

- ``approx``: the approximation's own error in the clear (the polynomial fits, Newton).
- ``c * 2^-frac``: a few units of the output's last place (roundings of the steps).
- ring limit: reciprocal / rsqrt end with one product w * 2^-(e+1) whose two factors
  share bits - 2 - (2 - emin) bits of scale (``approx.reciprocal``), emin = max(-16, -frac):
  (32, 12) keeps about 8 bits there, (64, 28) about 22. exp's r_0 ~ 1 is held at
  (bits - 2) / 2 bits and its relative error doubles with each of the 6 squarings: a 32-bit
  ring keeps about 9 bits (a policy with fewer squarings would keep more).
- layer norm: the normalised rows inherit two roundings at frac_bits, relative ones: of the
  variance, 2^-frac / var (largest at the smallest variance tested), and of rsqrt(var),
  2^-(frac+1) sqrt(var) (largest at the largest variance).
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import secjax
from secjax.primitives.policy import DEFAULT_POLICY

# CI covers a coarse and a 32-bit configuration (the default is test_nonlinear.py's); the
# rest run with --runslow.
CONFIGS = [
    (64, 12),
    pytest.param(64, 18, marks=pytest.mark.slow),
    pytest.param(64, 24, marks=pytest.mark.slow),
    pytest.param(64, 28, marks=pytest.mark.slow),
    pytest.param(32, 8, marks=pytest.mark.slow),
    (32, 12),
]

# (approximation error in the clear, units of the last place)
TOLERANCE = {
    "exp": (1e-4, 16),
    "reciprocal": (1e-6, 8),
    "rsqrt": (2e-4, 8),
    "sqrt": (2e-4, 8),
    "log": (1e-4, 8),
    "tanh": (1e-3, 16),
    "gelu": (4e-3, 16),
    "silu": (3e-3, 16),
    "softmax": (1e-5, 8),
    "layer_norm": (3e-4, 16),
}
NORMALISED = ("reciprocal", "rsqrt", "sqrt", "layer_norm")


def tolerance(name, bits, frac):
    approx, ulps = TOLERANCE[name]
    eff = frac
    if name == "exp":
        eff = min(frac, (bits - 2) // 2 - DEFAULT_POLICY.exp.squarings)
    if name in NORMALISED:
        emin = max(DEFAULT_POLICY.reciprocal.normalise.emin, -frac)
        eff = min(frac, (bits - 4 + emin) // 2)
    if name == "layer_norm":
        lo, hi = layer_norm_variances(bits, frac)
        approx += 2.0**-frac / lo + 2.0 ** -(frac + 1) * math.sqrt(hi)
    return approx + ulps * 2.0**-eff


def layer_norm_variances(bits, frac):
    """Row variances tested: [1e-3, 1e3] (the bound stated at 18 fractional bits) within
    what the configuration holds: inputs up to 4 standard deviations whose squares fit a
    product at frac_bits (|x|^2 < 2^(bits - 2 - 2 frac): var <= 4 at (64, 28) and (32, 12),
    a bound of the linear arithmetic), and variances of at least 2^10 units of their last
    place (0.25 at 12 fractional bits), whose own rounding is then below 0.1%."""
    return max(1e-3, 2.0 ** (10 - frac)), min(1e3, 2.0 ** (bits - 2 - 2 * frac) / 16)


def exp_top(bits, frac):
    """exp saturates at exp(hi), hi = min(12, log 2^(bits - 6 - frac)) (ExpPolicy)."""
    return min(DEFAULT_POLICY.exp.hi, (bits - 6 - frac) * math.log(2.0))


def _layer_norm(v):
    mean = v.mean(-1, keepdims=True)
    var = ((v - mean) ** 2).mean(-1, keepdims=True)
    return (v - mean) * jax.lax.rsqrt(var + 1e-5)


FUNCTIONS = {
    "exp": jnp.exp,
    "reciprocal": lambda v: 1.0 / v,
    "rsqrt": jax.lax.rsqrt,
    "sqrt": jnp.sqrt,
    "log": jnp.log,
    "tanh": jnp.tanh,
    "gelu": jax.nn.gelu,
    "silu": jax.nn.silu,
    "softmax": jax.nn.softmax,
    "layer_norm": _layer_norm,
}


def inputs(bits, frac):
    """One input per function; layer-norm rows span :func:`layer_norm_variances`."""
    rng = np.random.default_rng(0)
    sym = np.linspace(-10, 10, 201)
    pos = np.geomspace(0.01, 100, 201)
    return {
        "exp": np.linspace(-10, exp_top(bits, frac), 201),
        "reciprocal": sym[np.abs(sym) >= 0.1],
        "rsqrt": pos,
        "sqrt": pos,
        "log": pos,
        "tanh": sym,
        "gelu": np.linspace(-20, 20, 401),
        "silu": np.linspace(-20, 20, 401),
        "softmax": rng.uniform(-30, 30, (4, 64)),
        "layer_norm": rng.normal(size=(6, 32))
        * np.sqrt(np.geomspace(*layer_norm_variances(bits, frac), 6))[:, None],
    }


def _quantised(x, frac):
    return np.round(np.asarray(x, np.float64) * 2.0**frac) / 2.0**frac


def _all(xs):
    return {name: FUNCTIONS[name](x) for name, x in xs.items()}


def _errors(bits, frac, protocol="plain", names=tuple(FUNCTIONS)):
    xs = {n: x for n, x in inputs(bits, frac).items() if n in names}
    args = {n: jnp.asarray(x, jnp.float32) for n, x in xs.items()}
    got = secjax.secure_jit(_all, protocol=protocol, ring_bits=bits, frac_bits=frac)(args)
    out = {}
    with jax.enable_x64(True):
        for n, x in xs.items():
            ref = np.asarray(FUNCTIONS[n](jnp.asarray(_quantised(x, frac))), np.float64)
            err = np.abs(np.asarray(got[n], np.float64) - ref)
            out[n] = float(np.max(np.minimum(err, err / np.maximum(np.abs(ref), 1e-30))))
    return out


@pytest.mark.parametrize("bits,frac", CONFIGS)
def test_accurate_in_every_configuration(bits, frac):
    errors = _errors(bits, frac)
    bad = {
        n: (e, tolerance(n, bits, frac))
        for n, e in errors.items()
        if not e <= tolerance(n, bits, frac)
    }
    assert not bad, f"({bits}, {frac}): error, tolerance {bad}"


@pytest.mark.parametrize("bits,frac", [(64, 28), (32, 12)])
def test_exp_saturates_where_the_ring_ends(bits, frac):
    """Above hi (lowered to fit the ring), exp returns exp(hi), as documented."""
    top = exp_top(bits, frac)
    got = secjax.secure_jit(jnp.exp, protocol="plain", ring_bits=bits, frac_bits=frac)(
        jnp.asarray([top + 1.0, 50.0], jnp.float32)
    )
    np.testing.assert_allclose(got, [math.exp(top)] * 2, rtol=tolerance("exp", bits, frac))


@pytest.mark.parametrize("bits,frac", [(32, 12)])
def test_aby3(bits, frac):
    names = ("reciprocal", "gelu")
    errors = _errors(bits, frac, "aby3", names)
    for n in names:
        assert errors[n] <= tolerance(n, bits, frac), (n, errors[n])
