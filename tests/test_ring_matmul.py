"""ring.dot_general and ring.conv_general_dilated agree bit for bit with XLA's integer ops."""

import jax
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from secjax import ring

# 2^64 - 2^20 - 2^42 - 2^63 has every limb at its most negative (see ring._limbs).
ALL_LIMBS_MIN = 2**64 - 2**20 - 2**42 - 2**63
EXTREMES = np.array(
    [0, 1, 2**63, 2**64 - 1, 2**63 - 1, 2**31, 2**32 - 1, ALL_LIMBS_MIN], dtype=np.uint64
)
DTYPES = [np.uint64, np.uint32]


def ring_array(rng, shape, dtype):
    """Uniform ring elements with the extreme values sprinkled in."""
    x = rng.integers(0, 2**64, size=shape, dtype=np.uint64, endpoint=False)
    pick = rng.random(shape) < 0.2
    x[pick] = rng.choice(EXTREMES, size=int(pick.sum()))
    return x.astype(dtype)


def integer_dot(x, y, dn):
    return jax.lax.dot_general(x, y, dn, preferred_element_type=x.dtype)


# The most elements any drawn operand or result may hold: hypothesis draws its seed afresh on
# every run, and unbounded shapes once asked for an operand of over 10^9 elements.
MAX_ELEMENTS = 2**18


@st.composite
def dot_case(draw):
    """Random shapes, batch/contracting/free dims and axis orders for dot_general, each operand
    and the result at most MAX_ELEMENTS elements."""
    nb, nc = draw(st.integers(0, 2)), draw(st.integers(0, 2))
    nlf, nrf = draw(st.integers(0, 2)), draw(st.integers(0, 2))
    small = st.sampled_from([0, 1, 2, 3, 7, 16, 33])
    batch = [draw(small.filter(bool)) for _ in range(nb)]
    contract = [draw(st.sampled_from([1, 5, 64, 300, 911, 2500])) for _ in range(nc)]
    if math_prod(contract) > 3000:
        contract = contract[:1]
    lfree = [draw(st.sampled_from([1, 2, 9, 40, 70])) for _ in range(nlf)]
    rfree = [draw(st.sampled_from([0, 1, 3, 40, 65])) for _ in range(nrf)]
    # Drop free, then batch dimensions until every array fits.
    for dims in (lfree, rfree, batch):
        while dims and _largest_array(batch, contract, lfree, rfree) > MAX_ELEMENTS:
            dims.pop()
    nb, nc, nlf, nrf = len(batch), len(contract), len(lfree), len(rfree)
    lperm = draw(st.permutations(range(nb + nc + nlf)))
    rperm = draw(st.permutations(range(nb + nc + nrf)))
    # Logical axes: batch, then contracting, then free; placed at positions given by perm.
    lshape = [0] * len(lperm)
    rshape = [0] * len(rperm)
    for logical, size in enumerate(batch + contract + lfree):
        lshape[lperm[logical]] = size
    for logical, size in enumerate(batch + contract + rfree):
        rshape[rperm[logical]] = size
    lb, lc = tuple(lperm[:nb]), tuple(lperm[nb : nb + nc])
    rb, rc = tuple(rperm[:nb]), tuple(rperm[nb : nb + nc])
    return tuple(lshape), tuple(rshape), ((lc, rc), (lb, rb)), draw(st.integers(0, 2**32))


def _largest_array(batch, contract, lfree, rfree):
    """Elements of the largest of the two operands and the result."""
    b, c = math_prod(batch), math_prod(contract)
    return max(b * c * math_prod(lfree), b * c * math_prod(rfree), b * math_prod(lfree + rfree))


def math_prod(xs):
    return int(np.prod(xs)) if xs else 1


@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=25, deadline=None)
@given(case=dot_case())
def test_dot_general_matches_integer(dtype, case):
    lshape, rshape, dn, seed = case
    rng = np.random.default_rng(seed)
    with jax.enable_x64(True):
        x, y = ring_array(rng, lshape, dtype), ring_array(rng, rshape, dtype)
        got = jax.jit(ring.dot_general, static_argnums=2)(x, y, dn)
        want = integer_dot(x, y, dn)
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", [910, 911, 1820, 4000])
def test_worst_case_limbs(dtype, k):
    """Every limb at its extreme, across chunk boundaries: the float sums must stay exact."""
    dn = (((1,), (0,)), ((), ()))
    with jax.enable_x64(True):
        rng = np.random.default_rng(k)
        x = rng.choice(EXTREMES, size=(24, k))
        y = rng.choice(EXTREMES, size=(k, 24))
        # (d0 + d1)(e0 + e1) ~ (3 * 2^20)^2 in every term, with varied low bits, so the float
        # sums would round if a chunk summed more than ring._MAX_TERMS of them.
        x[0] = ALL_LIMBS_MIN + 1
        y[:, 0] = ALL_LIMBS_MIN + 1 + 2 * rng.integers(0, 1000, size=k, dtype=np.uint64)
        x[1] = y[:, 1] = 2**64 - 1
        x, y = x.astype(dtype), y.astype(dtype)
        np.testing.assert_array_equal(
            np.asarray(ring.dot_general(x, y, dn)), np.asarray(integer_dot(x, y, dn))
        )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kernel", [(3, 3), (31, 31)])  # 31*31*2 terms takes the integer path
def test_conv_matches_integer(dtype, kernel):
    params = dict(
        window_strides=(2, 1),
        padding=((1, 2), (0, 1)),
        lhs_dilation=(1, 2),
        rhs_dilation=(1, 1),
        feature_group_count=2,
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
    )
    with jax.enable_x64(True):
        rng = np.random.default_rng(0)
        x = ring_array(rng, (2, 33, 33, 4), dtype)
        w = ring_array(rng, (*kernel, 2, 6), dtype)
        got = jax.jit(lambda a, b: ring.conv_general_dilated(a, b, **params))(x, w)
        want = jax.lax.conv_general_dilated(x, w, **params, preferred_element_type=x.dtype)
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
