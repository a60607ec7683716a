"""Nonlinear functions through the public API, against float JAX, with the stated bounds
(18 fractional bits, 64-bit ring)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import secjax
import secjax.nn as snn
from secjax.primitives import patterns
from secjax.primitives.policy import GeluPolicy, SiluPolicy, SoftmaxPolicy
from secjax.protocols import PROTOCOLS
from secjax.protocols.plain import Plain


def secure(f, protocol, *args):
    """``f`` under ``protocol`` (the conftest fixture: every protocol built) as float64."""
    return np.asarray(secjax.secure_jit(f, **protocol)(*args), dtype=np.float64)


def errors(ref, got):
    ref = np.asarray(ref, np.float64)
    err = np.abs(ref - got)
    return err.max(), np.minimum(err, err / np.maximum(np.abs(ref), 1e-30)).max()


def f32(values):
    return jnp.asarray(np.asarray(values), jnp.float32)


SYMMETRIC = f32(np.linspace(-10, 10, 1001))
POSITIVE = f32(np.geomspace(0.01, 100, 1001))
WIDE = f32(np.concatenate([np.linspace(-20, 20, 2001), [-1e4, -300.0, 300.0, 1e4]]))


@pytest.mark.parametrize(
    "name,f,x",
    [
        ("exp", jnp.exp, SYMMETRIC),
        ("logistic", jax.nn.sigmoid, SYMMETRIC),
        ("tanh", jnp.tanh, SYMMETRIC),
        ("erf", jax.scipy.special.erf, SYMMETRIC),
        ("erfc", jax.scipy.special.erfc, SYMMETRIC),
        ("reciprocal", lambda v: 1.0 / v, SYMMETRIC[jnp.abs(SYMMETRIC) >= 0.1]),
        ("log", jnp.log, POSITIVE),
        ("sqrt", jnp.sqrt, POSITIVE),
        ("rsqrt", jax.lax.rsqrt, POSITIVE),
    ],
)
def test_elementwise_accuracy(protocol, name, f, x):
    """max |error| <= 0.01 or relative error <= 1%, pointwise."""
    _, abs_or_rel = errors(f(x), secure(f, protocol, x))
    assert abs_or_rel <= 0.01, name


@pytest.mark.parametrize(
    "name,f",
    [
        ("gelu_erf", lambda v: jax.nn.gelu(v, approximate=False)),
        ("gelu_tanh", lambda v: jax.nn.gelu(v, approximate=True)),
        ("silu", jax.nn.silu),
    ],
)
def test_gelu_silu_everywhere(protocol, name, f):
    worst, _ = errors(f(WIDE), secure(f, protocol, WIDE))
    assert worst <= 0.015, name


def test_gelu_three_pieces(protocol):
    """The earlier default, PUMA-style three pieces on (-4, -2, 4), stays within the bound."""
    policy = snn.DEFAULT_POLICY.replace(gelu=GeluPolicy(breaks=(-4.0, -2.0, 4.0), degrees=(4, 8)))
    f = lambda v: jax.nn.gelu(v, approximate=False)  # noqa: E731
    worst, _ = errors(f(WIDE), secure(f, {**protocol, "policy": policy}, WIDE))
    assert worst <= 0.015


def test_tanh_gelu_skips_its_cubic():
    """The tanh GeLU's argument c (x + 0.044715 x^3) is only looked through by the tanh
    rule, so x^3 is never computed: both GeLU forms cost exactly the same."""
    x = jnp.linspace(-5.0, 5.0, 256)
    costs = [
        secjax.secure_jit(lambda v, a=a: jax.nn.gelu(v, approximate=a), protocol="aby3").cost(x)
        for a in (False, True)
    ]
    assert costs[0].bytes_per_party == costs[1].bytes_per_party
    assert costs[0].rounds == costs[1].rounds


def test_gelu_policy_needs_one_degree_per_piece():
    with pytest.raises(ValueError, match="3 breaks bound 2 polynomials, but 1 degrees"):
        GeluPolicy(breaks=(-4.0, -2.0, 4.0), degrees=(10,))


def test_softmax_rows(protocol):
    x = jax.random.uniform(jax.random.key(0), (8, 128), minval=-30, maxval=30)
    worst, _ = errors(jax.nn.softmax(x), secure(jax.nn.softmax, protocol, x))
    assert worst <= 0.01


def test_log_softmax(protocol):
    x = jax.random.uniform(jax.random.key(1), (4, 128), minval=-10, maxval=10)
    worst, _ = errors(jax.nn.log_softmax(x), secure(jax.nn.log_softmax, protocol, x))
    assert worst <= 0.01


def _rows_with_variance(rows, width, seed=0):
    rng = np.random.default_rng(seed)
    var = np.geomspace(1e-3, 1e3, rows)
    return f32(rng.normal(size=(rows, width)) * np.sqrt(var)[:, None] + rng.normal(size=(rows, 1)))


def test_layer_norm(protocol):
    import flax.linen as nn

    x = _rows_with_variance(12, 64)
    ln = nn.LayerNorm()
    params = ln.init(jax.random.key(0), x)
    f = lambda v: ln.apply(params, v)  # noqa: E731
    ref, got = np.asarray(f(x)), secure(f, protocol, x)
    rel = np.abs(ref - got).max(axis=1) / np.abs(ref).max(axis=1)
    assert rel.max() <= 0.01


def test_rms_norm_llama(protocol):
    def rms_norm(h, eps=1e-6):  # as in transformers' FlaxLlamaRMSNorm
        variance = jnp.power(h, 2).mean(-1, keepdims=True)
        return h * (1 / jnp.sqrt(variance + eps))

    x = _rows_with_variance(12, 64, seed=1)
    ref, got = np.asarray(rms_norm(x)), secure(rms_norm, protocol, x)
    rel = np.abs(ref - got).max(axis=1) / np.abs(ref).max(axis=1)
    assert rel.max() <= 0.01


def test_max_argmax_and_comparisons(protocol):
    x = jax.random.normal(jax.random.key(2), (5, 37)) * 4
    x = x.at[0, 30].set(9.0).at[0, 3].set(9.0)  # tie: first index wins
    y = jax.random.normal(jax.random.key(3), (5, 37)) * 4
    for f in (
        lambda a: jnp.max(a, -1),
        lambda a: jnp.min(a, 0),
        jnp.max,
        jnp.abs,
        jnp.sign,
        lambda a: jnp.clip(a, -1, 2),
        jax.nn.relu,
        lambda a: jnp.where(a > 0.5, a, -a * 2),
    ):
        worst, _ = errors(f(x), secure(f, protocol, x))
        assert worst <= 1e-4
    for f in (lambda a: jnp.argmax(a, -1), lambda a: jnp.argmin(a, 0)):
        got = secjax.secure_jit(f, **protocol)(x)
        assert got.dtype == f(x).dtype and np.array_equal(got, f(x))
    for f in (
        jnp.less,
        jnp.greater,
        jnp.greater_equal,
        jnp.less_equal,
        jnp.equal,
        jnp.not_equal,
        lambda a, b: (a > 0) & (b > 0),
        lambda a, b: (a > 0) | (b > 0),
        lambda a, b: (a > 0) ^ (b > 0),
        lambda a, b: ~(a > b),
    ):
        got = secjax.secure_jit(f, **protocol)(x, y)
        assert got.dtype == np.bool_ and np.array_equal(got, f(x, y))
    got = secjax.secure_jit(jnp.equal, **protocol)(x, x)
    assert got.all()
    for f in (jnp.maximum, jnp.minimum):
        worst, _ = errors(f(x, y), secure(f, protocol, x, y))
        assert worst <= 1e-4


def test_powers(protocol):
    x = f32(np.concatenate([np.linspace(-10, -0.5, 100), np.linspace(0.5, 10, 100)]))
    _, abs_or_rel = errors(x**-2, secure(lambda v: v**-2, protocol, x))
    assert abs_or_rel <= 0.01
    p = jnp.abs(x)
    for f in (lambda v: v**1.5, lambda v: v**0.5, lambda v: v**-0.5):
        _, abs_or_rel = errors(f(p), secure(f, protocol, p))
        assert abs_or_rel <= 0.01


def test_saturation(protocol):
    """Outside their domains functions saturate to the documented bounded values."""
    got = secure(jnp.exp, protocol, f32([1000.0, -1000.0, -14.5]))
    np.testing.assert_allclose(got, [np.exp(12.0), 0.0, 0.0], rtol=1e-3)
    got = secure(jax.lax.rsqrt, protocol, f32([1e9, 0.0, -5.0]))
    assert got[0] == 0.0 and 0 < got[1] <= 2**8 * np.sqrt(2) + 1e-3 and got[2] == got[1]
    got = secure(lambda v: 1.0 / v, protocol, f32([1e9, -1e9, 0.0]))
    assert got[0] == 0.0 and got[1] == 0.0 and 0 < got[2] <= 2.0**17
    got = secure(jnp.log, protocol, f32([1e9, 0.0]))
    np.testing.assert_allclose(got, [25 * np.log(2), -17 * np.log(2)], atol=1e-3)
    row = f32(np.linspace(-5000, 5000, 128))[None]
    got = secure(jax.nn.softmax, protocol, row)
    np.testing.assert_allclose(got, jax.nn.softmax(row), atol=1e-4)
    for f, ref in (
        (jax.nn.gelu, [1e4, 0.0]),
        (jax.nn.silu, [1e4, 0.0]),
        (jax.nn.sigmoid, [1.0, 0.0]),
        (jnp.tanh, [1.0, -1.0]),
    ):
        np.testing.assert_allclose(secure(f, protocol, f32([1e4, -1e4])), ref, atol=1e-4)


def test_plaintext_functions_match_secure(protocol):
    """secjax.nn's plaintext functions are the same approximations as the secure rules."""
    pairs = [
        (snn.exp, jnp.exp, SYMMETRIC),
        (snn.logistic, jax.nn.sigmoid, SYMMETRIC),
        (snn.tanh, jnp.tanh, SYMMETRIC),
        (snn.erf, jax.scipy.special.erf, SYMMETRIC),
        (snn.log, jnp.log, POSITIVE),
        (snn.rsqrt, jax.lax.rsqrt, POSITIVE),
        (snn.sqrt, jnp.sqrt, POSITIVE),
        (snn.gelu, jax.nn.gelu, WIDE),
        (snn.silu, jax.nn.silu, WIDE),
        (lambda v: snn.gelu(v, approximate=True), lambda v: jax.nn.gelu(v, approximate=True), WIDE),
    ]
    for plain_fn, jax_fn, x in pairs:
        mine, theirs = np.asarray(plain_fn(x), np.float64), secure(jax_fn, protocol, x)
        # fixed-point rounding only: well below the approximation errors themselves
        assert np.max(np.abs(mine - theirs) / np.maximum(np.abs(mine), 1.0)) <= 2e-3
    x = jax.random.uniform(jax.random.key(4), (4, 128), minval=-30, maxval=30)
    np.testing.assert_allclose(snn.softmax(x), secure(jax.nn.softmax, protocol, x), atol=1e-4)
    # and the approximations themselves meet the bounds in the clear
    assert np.abs(snn.gelu(WIDE) - jax.nn.gelu(WIDE, approximate=False)).max() <= 0.015
    assert np.abs(snn.silu(WIDE) - jax.nn.silu(WIDE)).max() <= 0.015


class Counting(Plain):
    """plain, recording the logical shape of every msb call it runs (not those of the
    planning pass that finds a first call's kernels)."""

    name = "counting"
    msb_shapes: list = []

    def msb(self, a):
        if not self.runtime.abstract:
            Counting.msb_shapes.append(tuple(self.logical_shape(a)))
        return super().msb(a)


def test_softmax_takes_one_reciprocal_per_row(monkeypatch):
    monkeypatch.setitem(PROTOCOLS, "counting", Counting)
    Counting.msb_shapes = []
    rows = 3
    x = jax.random.normal(jax.random.key(5), (rows, 128))
    got = secjax.secure_jit(jax.nn.softmax, protocol="counting", parties=1)(x)
    np.testing.assert_allclose(got, jax.nn.softmax(x), atol=1e-4)
    q = snn.DEFAULT_POLICY.reciprocal.normalise
    thresholds = q.emax - q.emin + 3
    normalising = [s for s in Counting.msb_shapes if s[0] == thresholds]
    # one normalisation, over the row sums (before their broadcast): never elementwise
    assert normalising == [(thresholds, rows)]
    # the exp of x - max needs one comparison per element (x - max <= 0 is known), the
    # row sum is known positive (no sign comparison), the row max takes 127 per row
    total = sum(int(np.prod(s)) for s in Counting.msb_shapes)
    assert total == rows * (127 + 128 + thresholds)


def test_cost_report_runs(protocol):
    f = secjax.secure_jit(jax.nn.softmax, **protocol)
    report = f.cost(jax.ShapeDtypeStruct((2, 128), jnp.float32))
    if protocol["parties"] > 1:
        assert report.rounds > 0 and min(report.bytes_per_party) > 0
        assert {"a2b", "b2a"} <= set(report.by_op())  # comparisons for the max and the exp
    else:
        assert report.bytes_per_party == [0]


def test_relu_for_gelu_and_silu(protocol):
    """Opt-in substitutions through Config(policy=...): ReLU for both GeLU forms and SiLU,
    securely and in the plaintext functions."""
    policy = snn.DEFAULT_POLICY.replace(
        gelu=GeluPolicy(method="relu"), silu=SiluPolicy(method="relu")
    )
    x = SYMMETRIC

    def both(v):
        return {
            "erf": jax.nn.gelu(v, approximate=False),  # noqa: E731
            "tanh": jax.nn.gelu(v, approximate=True),
            "silu": jax.nn.silu(v),
        }

    got = secjax.secure_jit(both, **protocol, policy=policy)(x)
    for name in ("erf", "tanh", "silu"):
        np.testing.assert_allclose(got[name], jax.nn.relu(x), atol=1e-5, err_msg=name)
    np.testing.assert_allclose(snn.gelu(x, policy=policy), jax.nn.relu(x), atol=1e-6)
    np.testing.assert_allclose(snn.silu(x, policy=policy), jax.nn.relu(x), atol=1e-6)


QUAD = snn.DEFAULT_POLICY.replace(softmax=SoftmaxPolicy(method="2quad"))
FMIN = float(jnp.finfo(jnp.float32).min)


def _quad_inputs():
    """Scores in [-10, 10] (some below -c = -5) and a public additive mask of finfo.min
    (as Hugging Face models build it): one masked entry, one fully masked row."""
    x = jax.random.uniform(jax.random.key(6), (4, 128), minval=-10, maxval=10)
    bias = jnp.zeros((4, 128)).at[0, 3].set(FMIN).at[1].set(FMIN)
    return x, bias


def test_2quad_softmax(protocol):
    """2Quad securely is its plaintext twin up to rounding, masked entries get weight 0, and
    a fully masked row is 0."""
    x, bias = _quad_inputs()
    twin = snn.softmax(x + bias, policy=QUAD)
    weights = jnp.maximum(x + 5.0, 0.0) ** 2
    np.testing.assert_allclose(
        twin[2:], (weights / weights.sum(-1, keepdims=True))[2:], rtol=1e-5, atol=1e-7
    )
    f = lambda v, b: jax.nn.softmax(v + b)  # noqa: E731
    got = secjax.secure_jit(f, **protocol, policy=QUAD)(x, secjax.public(bias))
    np.testing.assert_allclose(got, twin, atol=1e-5)
    assert got[0, 3] == 0.0 and np.all(got[1] == 0.0)


def test_2quad_is_opt_in_and_only_replaces_softmax():
    """The default softmax is exp-based; 2Quad replaces the exp of jax.nn.softmax alone (its
    row max is then dead), never log_softmax's; all-public inputs get 2Quad in the clear."""
    assert snn.DEFAULT_POLICY.softmax == SoftmaxPolicy(method="exp")
    x = jnp.ones((2, 8))
    softmax = jax.make_jaxpr(jax.nn.softmax)(x).jaxpr
    (index,) = patterns.substitutions(softmax, QUAD)
    assert softmax.eqns[index].primitive.name == "exp"
    assert patterns.substitutions(softmax, snn.DEFAULT_POLICY) == {}
    assert patterns.substitutions(jax.make_jaxpr(jax.nn.log_softmax)(x).jaxpr, QUAD) == {}
    x, _ = _quad_inputs()
    np.testing.assert_allclose(snn.softmax(x), jax.nn.softmax(x), atol=1e-4)
    public = secjax.secure_jit(jax.nn.softmax, protocol="plain", policy=QUAD)(secjax.public(x))
    np.testing.assert_allclose(public, snn.softmax(x, policy=QUAD), atol=1e-6)
    with pytest.raises(ValueError, match="SoftmaxPolicy: unknown method 'quad'"):
        SoftmaxPolicy(method="quad")


def test_2quad_needs_no_row_max(monkeypatch):
    """One comparison per element (the ReLU) and one normalisation per row: the row max's
    127 comparisons per row are never made (here with softmax inside a nested jit)."""
    monkeypatch.setitem(PROTOCOLS, "counting", Counting)
    Counting.msb_shapes = []
    rows = 3
    x = jax.random.normal(jax.random.key(7), (rows, 128))
    got = secjax.secure_jit(jax.jit(jax.nn.softmax), protocol="counting", parties=1, policy=QUAD)(x)
    np.testing.assert_allclose(got, snn.softmax(x, policy=QUAD), atol=1e-5)
    q = snn.DEFAULT_POLICY.reciprocal.normalise
    thresholds = q.emax - q.emin + 3
    assert sorted(Counting.msb_shapes) == [(1, rows, 128), (thresholds, rows)]


ROUNDING = {
    "floor": jnp.floor,
    "ceil": jnp.ceil,
    "round_even": jnp.round,
    "trunc": jnp.trunc,
    "round_away": lambda v: jax.lax.round(v, jax.lax.RoundingMethod.AWAY_FROM_ZERO),
}


def test_floor_ceil_round_are_exact(protocol):
    """floor, ceil and both rounding methods exactly, on integers, halves (ties), values one
    unit (2^-18) either side of an integer, negative and large values."""
    x = np.concatenate(
        [
            np.arange(-80, 81) / 4.0,
            [n + s * 2.0**-18 for n in range(-3, 4) for s in (-1, 1)],
            [-1000.5, 1000.5, 12345.75, -12345.25, 2.0**20 + 0.5],
        ]
    )
    x = f32(x)
    got = secjax.secure_jit(lambda v: {k: f(v) for k, f in ROUNDING.items()}, **protocol)(x)
    for name, f in ROUNDING.items():
        np.testing.assert_array_equal(got[name], f(x), err_msg=name)
