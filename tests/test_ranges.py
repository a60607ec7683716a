"""The range guard, faithful ideal emulation, the safe truncation and the range report.

The probabilistic truncation of aby3 and semi2k is correct for |x| < 2^(k-2) only; a product
at 36 fractional bits (the default 18, twice) must stay below 2^26 ~ 6.7e7. Past that the
real protocols return x - 2^(k-d) with probability (|x| - 2^(k-2)) / 2^(k-1). A square is
known to be nonnegative, and is truncated correctly up to 2^(k-1) (2^27 ~ 1.3e8) at no cost.
"""

from __future__ import annotations

import re
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import secjax

PROTOCOLS = ["plain", "semi2k", "aby3"]
MODES = [(p, m) for p in PROTOCOLS for m in ("protocol", "ideal") if (p, m) != ("plain", "ideal")]

# 1e4 squared is 1e8 at scale 36: 6.9e18 ring units against the bound 2^62 = 4.6e18; the
# real protocols get each element wrong with probability (6.87 - 4.61) / 9.22 = 24.5%.
BIG = 1e4
FAILURE_RATE = (BIG**2 * 2.0**36 - 2.0**62) / 2.0**63


def _product(a, b):
    return a * b


def _big(n):
    return np.full(n, BIG, np.float32)


@pytest.mark.parametrize("protocol,emulation", MODES)
def test_guard_raises_past_the_truncation_bound(protocol, emulation):
    f = secjax.secure_jit(_product, protocol=protocol, emulation=emulation, seed=1)
    with pytest.raises(secjax.RangeError) as info:
        f(_big(100), _big(100))
    message = str(info.value)
    assert "`mul`" in message and "test_ranges.py" in message  # the equation and the line
    assert "2^62" in message and "1e+08 at 36 fractional bits" in message
    assert "safe_truncation" in message


@pytest.mark.parametrize("protocol,emulation", MODES)
def test_values_inside_the_bound_pass(protocol, emulation):
    x = np.linspace(-8000, 8000, 257, dtype=np.float32)  # products up to 6.4e7 < 6.7e7
    got = secjax.secure_jit(_product, protocol=protocol, emulation=emulation, seed=2)(x, x)
    np.testing.assert_allclose(got, x.astype(np.float64) ** 2, atol=1e-3, rtol=1e-6)


@pytest.mark.parametrize("protocol,emulation", MODES)
def test_squares_are_truncated_correctly_up_to_half_the_ring(protocol, emulation):
    """x * x, x ** 2 and jnp.square of 1.15e4 (1.3e8 < 2^27) are exact, at the cost of an
    ordinary product; 1.2e4 squared wraps the ring and is stopped."""
    x = np.array([BIG, -BIG, 1.15e4, -3.0, 0.0], np.float32)
    for fn in (lambda a: a * a, lambda a: a**2, jnp.square):
        got = secjax.secure_jit(fn, protocol=protocol, emulation=emulation, seed=7)(x)
        np.testing.assert_allclose(got, x.astype(np.float64) ** 2, atol=1e-3, rtol=1e-6)
    with pytest.raises(secjax.RangeError, match="wraps the 64-bit ring"):
        secjax.secure_jit(jnp.square, protocol=protocol, emulation=emulation)(
            np.full(4, 1.2e4, np.float32)
        )


@pytest.mark.parametrize("protocol", ["semi2k", "aby3"])
def test_a_square_costs_what_a_product_does(protocol):
    x = jax.ShapeDtypeStruct((1000,), jnp.float32)
    square = secjax.secure_jit(lambda a, b: a * a, protocol=protocol).cost(x, x)
    product = secjax.secure_jit(_product, protocol=protocol).cost(x, x)
    assert square.by_op() == product.by_op()


def _failure_rate(protocol, emulation, n=20000):
    f = secjax.secure_jit(
        _product, protocol=protocol, emulation=emulation, seed=3, range_guard="count"
    )
    got = f(_big(n), _big(n))
    (site,) = f.last_stats.out_of_range
    assert site.past == n and site.kind == "truncation" and site.label == "mul"
    assert site.expected_wrong == pytest.approx(FAILURE_RATE * n, rel=1e-3)
    wrong = np.abs(got - BIG**2) > 1.0
    # every wrong element is off by exactly 2^(k-d) ring units: 2^28 at the output's scale
    np.testing.assert_allclose(got[wrong], BIG**2 - 2.0**28, rtol=1e-6)
    return wrong.mean()


@pytest.mark.parametrize("protocol", ["semi2k", "aby3"])
def test_ideal_mode_fails_as_the_real_protocol_does(protocol):
    """With the guard counting instead of raising, ideal mode shows the real protocol's
    failure rate (20000 elements: one standard deviation is 0.3 points)."""
    real, ideal = _failure_rate(protocol, "protocol"), _failure_rate(protocol, "ideal")
    assert abs(real - FAILURE_RATE) < 0.015 and abs(ideal - FAILURE_RATE) < 0.015
    assert abs(real - ideal) < 0.02


def test_plain_counts_but_computes_exactly():
    f = secjax.secure_jit(_product, protocol="plain", range_guard="count")
    got = f(_big(10), _big(10))
    np.testing.assert_array_equal(got, np.full(10, BIG**2, np.float32))
    assert f.last_stats.out_of_range[0].past == 10


def test_wide_fractional_bits_warn_and_fail_as_documented():
    """frac_bits=28: a product of 10 * 10 is past the bound (|x y| < 2^6)."""
    with pytest.warns(secjax.RangeWarning, match=r"2\^6 = 64"):
        f = secjax.secure_jit(_product, protocol="aby3", frac_bits=28, emulation="ideal")
    ten = np.full(10, 10.0, np.float32)
    with pytest.raises(secjax.RangeError, match="100 at 56 fractional bits"):
        f(ten, ten)
    with warnings.catch_warnings():
        warnings.simplefilter("error", secjax.RangeWarning)
        secjax.Config(frac_bits=26)  # products up to 2^10 still fit: no warning


@pytest.mark.parametrize("protocol,emulation", MODES)
def test_safe_truncation_is_correct_on_the_whole_ring(protocol, emulation):
    x = np.array([BIG, -BIG, 1.1e4, -1.15e4, 3.0, -2.5, 0.0], np.float32)
    y = np.array([BIG, BIG, -1.2e4, -1.1e4, 7.0, 0.5, 9.0], np.float32)
    f = secjax.secure_jit(
        lambda a, b: a * b, protocol=protocol, emulation=emulation, safe_truncation=True, seed=4
    )
    np.testing.assert_allclose(f(x, y), x.astype(np.float64) * y, atol=1e-3, rtol=1e-6)


def test_safe_truncation_of_a_contraction_and_a_public_product():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(16, 8)).astype(np.float32)
    x = rng.normal(size=(4, 16)).astype(np.float32) * 3000
    f = secjax.secure_jit(lambda x, w: (x @ w) * 0.37, protocol="aby3", safe_truncation=True)
    np.testing.assert_allclose(f(x, w), (x.astype(np.float64) @ w) * 0.37, rtol=1e-5, atol=1e-2)


def test_a_product_that_wraps_the_ring_is_caught_even_in_plain():
    """1e5 * 1e5 is 1e10 at scale 36: 6.9e20, past 2^63; the ring value wraps."""
    f = secjax.secure_jit(_product, protocol="plain", safe_truncation=True)
    big = np.full(3, 1e5, np.float32)
    with pytest.raises(secjax.RangeError, match="wraps the 64-bit ring"):
        f(big, big)


def _two_scopes(a, b):
    with jax.named_scope("big"):
        big = a * b
    with jax.named_scope("small"):
        small = b * 3.0
    return big, small


def test_safe_truncation_only_in_the_scopes_named():
    a = np.full(64, BIG, np.float32)
    b = np.full(64, BIG, np.float32)
    f = secjax.secure_jit(_two_scopes, protocol="aby3", safe_truncation=("big",), seed=5)
    big, small = f(a, b)
    np.testing.assert_allclose(big, np.full(64, BIG**2), rtol=1e-6)
    np.testing.assert_allclose(small, np.full(64, 3 * BIG), rtol=1e-6)
    ops = {(scope, op) for scope, _, op in f.last_cost.rows}
    assert ("big", "a2b") in ops and ("small", "a2b") not in ops  # the msb's adder
    with pytest.raises(secjax.RangeError, match="scope 'big'"):
        secjax.secure_jit(_two_scopes, protocol="aby3", safe_truncation=("small",))(a, b)


@pytest.mark.parametrize("protocol", ["semi2k", "aby3"])
def test_safe_truncation_costs_one_msb_more_than_an_unfused_product(protocol):
    """Exact bytes: the safe truncation of a product is the product's shares, one msb and
    one probabilistic truncation (semi2k has no fused product, so it is exactly the default
    plus an msb there)."""
    x = jax.ShapeDtypeStruct((1000,), jnp.float32)

    def bytes_of(fn, **options):
        report = secjax.secure_jit(fn, protocol=protocol, **options).cost(x, x)
        return report.without_input_sharing().total.sent

    safe = bytes_of(lambda a, b: a * b, safe_truncation=True)
    default = bytes_of(lambda a, b: a * b)
    msb = bytes_of(lambda a, b: a < b)
    assert all(s > d for s, d in zip(safe, default))
    if protocol == "semi2k":
        reveal = bytes_of(lambda a, b: a + b)  # what opening the output costs
        assert [s - r for s, r in zip(safe, reveal)] == [
            d - r + m - r for d, m, r in zip(default, msb, reveal)
        ]


def test_config_refuses_unknown_guard_modes_and_scopes():
    with pytest.raises(ValueError, match="range_guard"):
        secjax.Config(range_guard="ignore")
    with pytest.raises(TypeError, match="safe_truncation"):
        secjax.Config(safe_truncation=(3,))
    assert secjax.Config(safe_truncation="encoder").safe_truncation == ("encoder",)


# -- the range report ------------------------------------------------------------------------
def test_range_report_finds_the_first_site_past_its_bound():
    def f(a, b):
        with jax.named_scope("fine"):
            c = a * 2.0 + b
        with jax.named_scope("overflow"):
            d = c * (c + 0.5)
        return jnp.tanh(d * 1e-8)

    fn = secjax.secure_jit(f, protocol="aby3")
    report = fn.ranges(np.full(8, 5e3, np.float32), np.full(8, 1.0, np.float32))
    first = report.first_overflow
    assert first is not None and first.scope == "overflow" and first.label == "mul"
    assert "test_ranges.py" in first.source
    # 10001 * 10001.5 at 36 bits: 1.0003e8 against 6.7e7, past by 0.58 bits
    assert first.headroom == pytest.approx(26 - np.log2(10001.0 * 10001.5), abs=1e-3)
    assert not report.fits
    assert "overflow" in str(report) and "First past its bound" in str(report)
    # 18 - ceil(0.58 / 2) = 17 fractional bits take products to 2^28: it fits
    assert report.largest_frac_bits == 17
    assert report.suggested_safe_scopes() == ("overflow",)


def test_range_report_of_a_fitting_program_and_its_plot(tmp_path):
    fn = secjax.secure_jit(lambda a: jnp.exp(a) * a, protocol="semi2k")
    report = fn.ranges(np.linspace(-3, 3, 50, dtype=np.float32))
    assert report.fits and report.first_overflow is None
    tight = report.tightest
    assert tight is not None and tight.label == "mul" and not tight.planned
    # exp(3) * 3 = 60.3 at 36 bits: 26 - log2(60.3) = 20.1 bits of headroom
    assert tight.headroom == pytest.approx(26 - np.log2(np.exp(3.0) * 3.0), abs=0.05)
    assert report.largest_frac_bits is not None and report.largest_frac_bits > 18
    path = tmp_path / "ranges.png"
    report.plot(str(path))
    assert path.stat().st_size > 1000
    assert re.search(r"Every value stays inside its bound", report.advice())


def test_llama_with_an_outlier_channel_is_flagged_and_fixed_as_the_report_proposes():
    """A tiny Hugging Face LLaMA whose embeddings carry one channel of 2e4 (a "massive
    activation", Sun et al. 2024) in the residual stream: every RMSNorm squares it to 4e8,
    which wraps the ring at 36 fractional bits (a square of 1e4 fits: squares are truncated
    correctly up to 2^(k-1)). The report names those norms and finds frac_bits=17, which
    runs correctly."""
    import zoo_models

    model = zoo_models.FACTORIES["llama"]()
    params = jax.tree.map(np.asarray, model.params)
    table = params["model"]["embed_tokens"]["embedding"].copy()
    table[:, 5] = 2 * BIG
    params["model"]["embed_tokens"]["embedding"] = table
    inputs = {name: value[:, :8] for name, value in model.inputs.items()}
    expected = jax.jit(model.fn)(params, **inputs)

    f = secjax.secure_jit(model.fn, protocol="aby3", emulation="ideal", seed=6)
    report = f.ranges(params, **inputs)
    flagged = list(
        dict.fromkeys(site.scope.split("model/", 1)[1] for site in report.sites if site.past)
    )
    norms = [
        f"layers/{i}/{norm}"
        for i in range(2)
        for norm in ("input_layernorm", "post_attention_layernorm")
    ]
    assert flagged == [*norms, "norm"] and report.wraps
    assert report.first_overflow.label == "integer_pow"
    assert report.largest_frac_bits == 17 and "frac_bits <= 17" in report.advice()
    with pytest.raises(secjax.RangeError, match="input_layernorm"):
        f(params, **inputs)
    fixed = secjax.secure_jit(
        model.fn, protocol="aby3", emulation="ideal", seed=6, frac_bits=report.largest_frac_bits
    )
    np.testing.assert_allclose(fixed(params, **inputs), expected, atol=1e-2)
