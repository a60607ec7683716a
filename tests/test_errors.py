"""Bad input never gives a silent wrong answer: each case raises a clear error."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import secjax
from secjax.primitives import RULES


def plain(f):
    return secjax.secure_jit(f, protocol="plain")


def test_unsupported_primitive_names_primitive_and_source_line():
    lgamma_has_no_rule = "lgamma" not in RULES
    assert lgamma_has_no_rule

    def f(x):
        return jax.lax.lgamma(x)  # the line the error must point at

    with pytest.raises(secjax.UnsupportedError) as err:
        plain(f)(jnp.ones(3))
    message = str(err.value)
    assert "`lgamma`" in message
    assert f"test_errors.py:{f.__code__.co_firstlineno + 1}" in message


def test_complex_inputs_are_refused():
    with pytest.raises(secjax.EncodingError, match="complex64"):
        plain(lambda x: x * 2)(jnp.ones(2, jnp.complex64))


def test_secret_input_too_large_for_the_ring():
    with pytest.raises(secjax.EncodingError, match=r"argument args\[0\]\['w'\].*does not fit"):
        plain(lambda p: p["w"] * 2)({"w": np.array([1e15], np.float32)})
    with pytest.raises(secjax.EncodingError, match="inf or NaN"):
        plain(lambda x: x * 2)(np.array([np.inf], np.float32))
    with pytest.raises(secjax.EncodingError, match="does not fit"):
        plain(lambda x: x * 2)(secjax.private(np.array([-1e15], np.float32), 0))


def test_float64_input_out_of_range_is_refused():
    with jax.enable_x64(True):
        big = jnp.array([1e300], jnp.float64)
    with pytest.raises(secjax.EncodingError, match="does not fit"):
        plain(lambda x: x + 1)(big)


def test_while_on_secret_condition_is_refused():
    def f(x):
        return jax.lax.while_loop(lambda c: c[0] < 10, lambda c: c * 2, x)

    with pytest.raises(secjax.UnsupportedError, match="loop condition depends on secret"):
        plain(f)(jnp.ones(1))


def test_secret_positions_are_refused():
    def f(x, i):
        return jax.lax.dynamic_slice(x, (i,), (2,))

    with pytest.raises(secjax.UnsupportedError, match="dynamic_slice.*public"):
        plain(f)(jnp.ones(5), jnp.int32(1))


def test_secret_float_to_int_is_refused():
    with pytest.raises(secjax.UnsupportedError, match="rounds toward zero"):
        plain(lambda x: x.astype(jnp.int32))(jnp.ones(2))


def test_integer_division_in_too_narrow_a_ring_is_clear():
    """Exact long division of w-bit integers needs 2w ring bits."""

    def f(x, y):
        return x // y

    narrow = secjax.secure_jit(f, protocol="plain", ring_bits=32, frac_bits=10)
    with pytest.raises(secjax.UnsupportedError, match="ring of at least 64 bits"):
        narrow(jnp.arange(3), jnp.arange(1, 4))


def test_private_to_a_party_that_does_not_exist():
    with pytest.raises(secjax.SecjaxError, match="private to party 7"):
        plain(lambda x: x * 2)(secjax.private(jnp.ones(2), 7))


def test_error_in_library_code_names_the_users_call_site():
    from jax._src.source_info_util import Frame

    from secjax.primitives.context import _describe_frames

    lib = Frame(
        "/venv/lib/python3.11/site-packages/flax/linen/linear.py",
        "Embed.__call__",
        1194,
        0,
        1194,
        10,
    )
    model = Frame(
        "/venv/lib/python3.11/site-packages/transformers/bert.py", "forward", 50, 0, 50, 10
    )
    user = Frame("/home/me/serve.py", "embed", 12, 0, 12, 10)
    assert _describe_frames([lib, model, user]) == (
        "/venv/lib/python3.11/site-packages/flax/linen/linear.py:1194 (Embed.__call__), "
        "called from /home/me/serve.py:12 (embed)"
    )
    assert _describe_frames([user]) == "/home/me/serve.py:12 (embed)"
