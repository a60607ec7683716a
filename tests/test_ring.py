"""Property tests of ring arithmetic and fixed-point encoding."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from secjax import ring as R
from secjax.ring import Ring

RINGS = [Ring(64, 18), Ring(32, 12)]
reals = st.floats(min_value=-1e4, max_value=1e4, allow_nan=False, width=64)


@pytest.fixture(autouse=True)
def x64():
    with jax.enable_x64(True):
        yield


@pytest.mark.parametrize("ring", RINGS, ids=str)
@settings(max_examples=60, deadline=None)
@given(x=st.lists(reals, min_size=1, max_size=8))
def test_encode_decode_within_half_ulp(ring, x):
    x = np.asarray(x)
    limit = ring.max_abs(ring.frac_bits) / 4
    x = np.clip(x, -limit, limit)
    back = np.asarray(R.decode(ring, R.encode(ring, x, ring.frac_bits), ring.frac_bits, np.float64))
    np.testing.assert_allclose(back, x, rtol=0, atol=2.0 ** -(ring.frac_bits + 1) + 1e-12)


@pytest.mark.parametrize("ring", RINGS, ids=str)
@settings(max_examples=60, deadline=None)
@given(a=st.integers(-(2**62), 2**62), b=st.integers(-(2**62), 2**62))
def test_ring_add_mul_are_modular(ring, a, b):
    modulus = 2**ring.bits
    ea = R.encode(
        ring,
        jnp.asarray(
            a % modulus - (modulus if a % modulus >= modulus // 2 else 0), ring.signed_dtype
        ),
        0,
    )
    eb = R.encode(
        ring,
        jnp.asarray(
            b % modulus - (modulus if b % modulus >= modulus // 2 else 0), ring.signed_dtype
        ),
        0,
    )
    assert int(ea + eb) == (a + b) % modulus
    assert int(ea * eb) == (a * b) % modulus
    assert int(ea - eb) == (a - b) % modulus
    assert int(-ea) == (-a) % modulus


@pytest.mark.parametrize("ring", RINGS, ids=str)
@settings(max_examples=60, deadline=None)
@given(x=st.integers(-(2**30), 2**30), bits=st.integers(0, 12))
def test_arshift_is_floor_division(ring, x, bits):
    enc = R.encode(ring, jnp.asarray(x, ring.signed_dtype), 0)
    if ring.bits == 32:
        x = int(np.int32(np.int64(x) & 0xFFFFFFFF if x >= 0 else x)) if abs(x) < 2**31 else x
    assert int(R.to_signed(ring, R.arshift(ring, enc, bits))) == x >> bits
    assert int(R.msb(ring, enc)) == (1 if x < 0 else 0)


@pytest.mark.parametrize("ring", RINGS, ids=str)
def test_public_constants_saturate_instead_of_wrapping(ring):
    big = np.array([np.finfo(np.float32).min, -np.inf, np.inf, np.finfo(np.float32).max, 1.0])
    back = np.asarray(
        R.decode(ring, R.encode(ring, big, ring.frac_bits), ring.frac_bits, np.float64)
    )
    bound = ring.saturation_bound(ring.frac_bits)
    np.testing.assert_array_equal(back, [-bound, -bound, bound, bound, 1.0])


def test_check_range_refuses_what_would_wrap():
    ring = Ring(64, 18)
    R.check_range(ring, np.array([1e12]), 18)
    with pytest.raises(OverflowError, match="does not fit"):
        R.check_range(ring, np.array([1e14]), 18)
    with pytest.raises(OverflowError, match="inf or NaN"):
        R.check_range(ring, np.array([np.nan]), 18)


def test_integer_encoding_is_exact():
    ring = Ring(64, 18)
    x = np.array([-(2**40), -1, 0, 1, 2**40], dtype=np.int64)
    np.testing.assert_array_equal(np.asarray(R.decode(ring, R.encode(ring, x, 0), 0, np.int64)), x)
    np.testing.assert_array_equal(
        np.asarray(R.decode(ring, R.encode(ring, np.array([True, False]), 0), 0, np.bool_)),
        [True, False],
    )
