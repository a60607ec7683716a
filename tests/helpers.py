"""Helpers the test modules share: running a function both ways and comparing results."""

from __future__ import annotations

import jax
import numpy as np

import secjax


def run_both(f, *args, **options):
    """``(secure result, jax.jit result)`` of ``f`` on ``args``."""
    secure = secjax.secure_jit(f, **options)(*args)
    plain = jax.jit(f)(*args)
    return secure, plain


def assert_close(secure, expected, *, atol=1e-3, rtol=1e-3):
    """Same pytree structure, shapes and dtypes, values within tolerance."""
    s_leaves, s_tree = jax.tree.flatten(secure)
    e_leaves, e_tree = jax.tree.flatten(expected)
    assert s_tree == e_tree
    for s, e in zip(s_leaves, e_leaves):
        s, e = np.asarray(s), np.asarray(e)
        assert s.shape == e.shape, (s.shape, e.shape)
        assert s.dtype == e.dtype, (s.dtype, e.dtype)
        if e.dtype == np.bool_ or np.issubdtype(e.dtype, np.integer):
            np.testing.assert_array_equal(s, e)
        else:
            np.testing.assert_allclose(s, e, atol=atol, rtol=rtol)
