"""A sweep over jax.numpy's elementwise math, comparison, logic, bitwise, reduction and
sorting families on secret float32, int32 and bool inputs, against ``jax.jit``.

Each family runs as ONE secure call returning every case's result (so a family costs one
trace and one set of kernels per protocol); each result is then compared with its own
tolerance. Families marked ``slow`` run with --runslow; the others run in CI under every
protocol of the ``protocol`` fixture. ``CASES`` is also what the coverage counts in the
README come from (``python tests/test_coverage.py`` prints them).
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import secjax

RNG = np.random.default_rng(7)
# floats kept away from the ring's resolution (2^-18) and from domain edges
F = jnp.asarray(np.round(RNG.uniform(-4, 4, 24), 3).astype(np.float32))
G = jnp.asarray(np.round(RNG.uniform(-4, 4, 24), 3).astype(np.float32))
POS = jnp.asarray(np.round(RNG.uniform(0.05, 8, 24), 3).astype(np.float32))
UNIT = jnp.asarray(np.round(RNG.uniform(-0.95, 0.95, 24), 3).astype(np.float32))
INTS = jnp.asarray(RNG.integers(-1000, 1000, 24).astype(np.int32))
J = jnp.asarray(np.where(RNG.random(24) < 0.5, -1, 1) * RNG.integers(1, 40, 24)).astype(jnp.int32)
SMALL = jnp.asarray(RNG.integers(0, 31, 24).astype(np.int32))
B = jnp.asarray(RNG.random(24) < 0.5)
C = jnp.asarray(RNG.random(24) < 0.5)
ROWS = jnp.asarray(np.round(RNG.uniform(-4, 4, (4, 9)), 3).astype(np.float32))
IROWS = jnp.asarray(RNG.integers(-50, 50, (4, 9)).astype(np.int32))
BROWS = jnp.asarray(RNG.random((4, 9)) < 0.6)


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    fn: Callable
    args: tuple
    atol: float = 2e-3
    rtol: float = 2e-3


def _cases(*specs, atol=2e-3, rtol=2e-3):
    return [Case(name, fn, args, atol, rtol) for name, fn, args in specs]


ELEMENTWISE_FLOAT = _cases(
    ("abs", jnp.abs, (F,)),
    ("negative", jnp.negative, (F,)),
    ("positive", jnp.positive, (F,)),
    ("square", jnp.square, (F,)),
    ("sqrt", jnp.sqrt, (POS,)),
    ("exp", jnp.exp, (F,)),
    ("exp2", jnp.exp2, (F,)),
    ("expm1", jnp.expm1, (F,)),
    ("log", jnp.log, (POS,)),
    ("log1p", jnp.log1p, (POS,)),
    ("log2", jnp.log2, (POS,)),
    ("log10", jnp.log10, (POS,)),
    ("reciprocal", jnp.reciprocal, (POS,)),
    ("sign", jnp.sign, (F,)),
    ("floor", jnp.floor, (F,)),
    ("ceil", jnp.ceil, (F,)),
    ("round", jnp.round, (F,)),
    ("rint", jnp.rint, (F,)),
    ("trunc", jnp.trunc, (F,)),
    ("deg2rad", jnp.deg2rad, (F,)),
    ("rad2deg", jnp.rad2deg, (F,)),
    ("add", jnp.add, (F, G)),
    ("subtract", jnp.subtract, (F, G)),
    ("multiply", jnp.multiply, (F, G)),
    ("divide", jnp.divide, (F, POS)),
    ("power", jnp.power, (POS, G)),
    ("float_power3", lambda x: jnp.power(x, 3), (F,)),
    ("maximum", jnp.maximum, (F, G)),
    ("minimum", jnp.minimum, (F, G)),
    ("fmax", jnp.fmax, (F, G)),
    ("fmin", jnp.fmin, (F, G)),
    ("clip", lambda x: jnp.clip(x, -1.5, 2.0), (F,)),
    ("logaddexp", jnp.logaddexp, (F, G)),
    ("hypot", jnp.hypot, (F, G)),
    ("copysign", jnp.copysign, (F, G)),
    ("heaviside", lambda x: jnp.heaviside(x, 0.5), (F,)),
    ("nan_to_num", jnp.nan_to_num, (F,)),
    ("fmod", jnp.fmod, (F, POS)),
    ("mod", jnp.mod, (F, POS)),
    ("remainder", jnp.remainder, (F, G)),
    ("floor_divide", jnp.floor_divide, (F, POS)),
    ("sigmoid", jax.nn.sigmoid, (F,)),
    ("softplus", jax.nn.softplus, (F,)),
    ("relu", jax.nn.relu, (F,)),
    ("tanh", jnp.tanh, (F,)),
    ("erf", jax.scipy.special.erf, (F,)),
    ("signbit", jnp.signbit, (F,)),
    ("isfinite", jnp.isfinite, (F,)),
    ("isinf", jnp.isinf, (F,)),
    ("isnan", jnp.isnan, (F,)),
) + _cases(  # the policy's GeLU and SiLU are within 0.0015 and 0.0027 (secjax.nn.Policy)
    ("gelu", jax.nn.gelu, (F,)), ("silu", jax.nn.silu, (F,)), atol=3e-3
)

TRIGONOMETRIC = _cases(
    ("sin", jnp.sin, (F * 5,)),
    ("cos", jnp.cos, (F * 5,)),
    ("tan", jnp.tan, (UNIT,)),
    ("arcsin", jnp.arcsin, (UNIT,)),
    ("arccos", jnp.arccos, (UNIT,)),
    ("arctan", jnp.arctan, (F,)),
    ("arctan2", jnp.arctan2, (F, G)),
    ("sinh", jnp.sinh, (F,)),
    ("cosh", jnp.cosh, (F,)),
    ("arcsinh", jnp.arcsinh, (F,)),
    ("arccosh", jnp.arccosh, (POS + 1,)),
    ("arctanh", jnp.arctanh, (UNIT,)),
)

ELEMENTWISE_INT = _cases(
    ("add", jnp.add, (INTS, J)),
    ("subtract", jnp.subtract, (INTS, J)),
    ("multiply", jnp.multiply, (INTS, J)),
    ("negative", jnp.negative, (INTS,)),
    ("abs", jnp.abs, (INTS,)),
    ("sign", jnp.sign, (INTS,)),
    ("square", jnp.square, (INTS,)),
    ("power3", lambda x: jnp.power(x, 3), (J,)),
    ("maximum", jnp.maximum, (INTS, J)),
    ("minimum", jnp.minimum, (INTS, J)),
    ("clip", lambda x: jnp.clip(x, -100, 200), (INTS,)),
    ("floor_divide", jnp.floor_divide, (INTS, J)),
    ("mod", jnp.mod, (INTS, J)),
    ("remainder", jnp.remainder, (INTS, J)),
    ("fmod", jnp.fmod, (INTS, J)),
    ("divmod", jnp.divmod, (INTS, J)),
    ("floor_divide_public", lambda x: x // 7, (INTS,)),
    ("true_divide", jnp.true_divide, (INTS, J)),
    ("astype_float", lambda x: x.astype(float), (INTS,)),
)

BITWISE = _cases(
    ("bitwise_and", jnp.bitwise_and, (INTS, J)),
    ("bitwise_or", jnp.bitwise_or, (INTS, J)),
    ("bitwise_xor", jnp.bitwise_xor, (INTS, J)),
    ("bitwise_not", jnp.bitwise_not, (INTS,)),
    ("invert", jnp.invert, (INTS,)),
    ("and_public", lambda x: x & 0x0F0F, (INTS,)),
    ("left_shift", lambda x: jnp.left_shift(x, 3), (INTS,)),
    ("right_shift", lambda x: jnp.right_shift(x, 2), (INTS,)),
    ("right_shift_each", lambda x: jnp.right_shift(x, jnp.arange(24) % 9), (INTS,)),
    ("shift_right_logical", lambda x: jax.lax.shift_right_logical(x, 5), (INTS,)),
    ("bitwise_count", jnp.bitwise_count, (INTS,)),
    ("population_count", jax.lax.population_count, (INTS,)),
    ("uint32_ops", lambda x: (x.astype(jnp.uint32) >> 3, ~x.astype(jnp.uint32)), (INTS,)),
    ("bool_and", jnp.bitwise_and, (B, C)),
    ("bool_xor", jnp.bitwise_xor, (B, C)),
)

COMPARISON = _cases(
    ("equal", jnp.equal, (F, G)),
    ("not_equal", jnp.not_equal, (F, G)),
    ("less", jnp.less, (F, G)),
    ("less_equal", jnp.less_equal, (F, G)),
    ("greater", jnp.greater, (F, G)),
    ("greater_equal", jnp.greater_equal, (F, G)),
    ("equal_int", jnp.equal, (INTS, J)),
    ("less_int", jnp.less, (INTS, J)),
    ("greater_equal_int", jnp.greater_equal, (INTS, J)),
    ("equal_bool", jnp.equal, (B, C)),
    ("isclose", lambda x: jnp.isclose(x, x + jnp.where(jnp.arange(24) % 2, 0.0, 0.5)), (F,)),
    ("array_equal", lambda x: jnp.array_equal(x, x), (INTS,)),
    ("array_equiv", lambda x, y: jnp.array_equiv(x, y), (INTS, J)),
    ("allclose", lambda x: jnp.allclose(x, x + 1e-3), (F,)),
    ("where", lambda x, y: jnp.where(x > y, x, y), (F, G)),
)

LOGIC = _cases(
    ("logical_and", jnp.logical_and, (B, C)),
    ("logical_or", jnp.logical_or, (B, C)),
    ("logical_xor", jnp.logical_xor, (B, C)),
    ("logical_not", jnp.logical_not, (B,)),
    ("logical_and_float", jnp.logical_and, (F, G)),
    ("logical_not_int", jnp.logical_not, (INTS,)),
    ("select", lambda b, x, y: jax.lax.select(b, x, y), (B, F, G)),
    ("python_bool_literals", lambda b: (b & False, b | True), (B,)),
)

REDUCTION = _cases(
    ("sum", lambda x: jnp.sum(x, 1), (ROWS,)),
    ("mean", lambda x: jnp.mean(x, 0), (ROWS,)),
    ("max", lambda x: jnp.max(x, 1), (ROWS,)),
    ("min", lambda x: jnp.min(x, 0), (IROWS,)),
    ("argmax", lambda x: jnp.argmax(x, 1), (ROWS,)),
    ("argmin", lambda x: jnp.argmin(x, 1), (IROWS,)),
    ("ptp", lambda x: jnp.ptp(x, 1), (ROWS,)),
    ("var", lambda x: jnp.var(x, 1), (ROWS,)),
    ("std", lambda x: jnp.std(x, 1), (ROWS,)),
    ("average", lambda x: jnp.average(x, 1, weights=jnp.arange(1.0, 10.0)), (ROWS,)),
    ("logsumexp", lambda x: jax.nn.logsumexp(x, 1), (ROWS,)),
    ("softmax", lambda x: jax.nn.softmax(x, 1), (ROWS,)),
    ("norm", lambda x: jnp.linalg.norm(x, axis=1), (ROWS,)),
    ("nansum", lambda x: jnp.nansum(x, 1), (ROWS,)),
    ("nanmax", lambda x: jnp.nanmax(x, 1), (ROWS,)),
)

PRODUCTS_AND_PREFIXES = _cases(
    ("prod", lambda x: jnp.prod(x * 0.5, 1), (ROWS,)),
    ("prod_int", lambda x: jnp.prod(x[:, :3], 1), (IROWS,)),
    ("all", lambda b: jnp.all(b, 1), (BROWS,)),
    ("any", lambda b: jnp.any(b, 0), (BROWS,)),
    ("count_nonzero", lambda x: jnp.count_nonzero(x, 1), (IROWS,)),
    ("cumsum", lambda x: jnp.cumsum(x, 1), (ROWS,)),
    ("cumprod", lambda x: jnp.cumprod(x * 0.5, 1), (ROWS,)),
    ("cummax", lambda x: jax.lax.cummax(x, 1), (IROWS,)),
    ("cummin", lambda x: jax.lax.cummin(x, 1, reverse=True), (ROWS,)),
)

SORTING = _cases(
    ("sort", lambda x: jnp.sort(x, 1), (ROWS,)),
    ("sort_axis0", lambda x: jnp.sort(x, 0), (IROWS,)),
    ("sort_descending", lambda x: jnp.sort(x, 1, descending=True), (ROWS,)),
    ("argsort", lambda x: jnp.argsort(x, 1), (IROWS,)),
    ("argsort_descending", lambda x: jnp.argsort(x, 1, descending=True), (IROWS,)),
    ("top_k", lambda x: jax.lax.top_k(x, 3), (IROWS,)),
    ("median", lambda x: jnp.median(x, 1), (ROWS,)),
    ("percentile", lambda x: jnp.percentile(x, 25.0, axis=1), (ROWS,)),
    ("sort_bool", lambda b: jnp.sort(b, 1), (BROWS,)),
)

FAMILIES = {
    "elementwise (float32)": ELEMENTWISE_FLOAT,
    "trigonometric": TRIGONOMETRIC,
    "elementwise (int32)": ELEMENTWISE_INT,
    "bitwise": BITWISE,
    "comparison": COMPARISON,
    "logic": LOGIC,
    "reduction": REDUCTION,
    "products and prefixes": PRODUCTS_AND_PREFIXES,
    "sorting": SORTING,
}
# families of long-standing rules: CI runs the new ones
SLOW_FAMILIES = {"elementwise (float32)", "reduction"}


def _run_family(cases, options):
    def every(*flat):
        out, i = [], 0
        for case in cases:
            out.append(case.fn(*flat[i : i + len(case.args)]))
            i += len(case.args)
        return out

    flat = [a for case in cases for a in case.args]
    secure = secjax.secure_jit(every, **options)(*flat)
    plain = jax.jit(every)(*flat)
    return secure, plain


def _compare(case, secure, plain):
    for s, p in zip(jax.tree.leaves(secure), jax.tree.leaves(plain), strict=True):
        s, p = np.asarray(s), np.asarray(p)
        assert s.shape == p.shape and s.dtype == p.dtype, (case.name, s.dtype, p.dtype)
        if np.issubdtype(p.dtype, np.floating):
            np.testing.assert_allclose(s, p, atol=case.atol, rtol=case.rtol, err_msg=case.name)
        else:
            np.testing.assert_array_equal(s, p, err_msg=case.name)


@pytest.mark.parametrize(
    "family",
    [
        pytest.param(name, marks=[pytest.mark.slow] if name in SLOW_FAMILIES else [])
        for name in FAMILIES
    ],
)
def test_family(family, protocol):
    cases = FAMILIES[family]
    secure, plain = _run_family(cases, protocol)
    for case, s, p in zip(cases, secure, plain, strict=True):
        _compare(case, s, p)


def test_trigonometric_error_bounds():
    """TrigPolicy's stated errors, on dense grids over its domain (plain: the fixed-point
    arithmetic alone; the protocols add their truncation's last-bit error)."""
    wide = jnp.linspace(-1000, 1000, 4001, dtype=jnp.float32)
    unit = jnp.linspace(-0.999, 0.999, 2001, dtype=jnp.float32)
    for fn, x, bound in [
        (jnp.sin, wide, 2e-5),
        (jnp.cos, wide, 2e-5),
        (jnp.arctan, wide / 50, 1e-4),
        (jnp.arcsin, unit, 1e-4),
        (jnp.arccos, unit, 1e-4),
    ]:
        secure = secjax.secure_jit(fn, protocol="plain")(x)
        np.testing.assert_allclose(secure, fn(x), atol=bound, rtol=0, err_msg=fn.__name__)


@pytest.mark.parametrize(
    "fn, args, message",
    [
        (lambda x, s: x << s, (INTS, SMALL), "shift by a non-public amount"),
        (lambda x: jax.lax.bitcast_convert_type(x, jnp.int32) + 1, (F,), "no IEEE bits"),
        (lambda x, y: jax.lax.sort((x, y), num_keys=2), (F, G), "by 2 keys"),
        (
            lambda x: jax.lax.reduce_window(
                x, -jnp.inf, jax.lax.max, (1, 2), (1, 1), "VALID", window_dilation=(1, 2)
            ),
            (ROWS,),
            "window_dilation",
        ),
    ],
)
def test_what_is_not_computed_is_a_clear_error(fn, args, message):
    with pytest.raises(secjax.errors.UnsupportedError, match=message):
        secjax.secure_jit(fn, protocol="plain")(*args)


if __name__ == "__main__":
    for name, cases in FAMILIES.items():
        print(f"{name}: {len(cases)} cases")
    print(f"total: {sum(len(c) for c in FAMILIES.values())}")
