"""Shared fixtures: the protocols every rule is tested under, and a comparison helper."""
from __future__ import annotations

import jax
import numpy as np
import pytest

import secjax
from secjax.protocols import PROTOCOLS

# (protocol, parties) combinations every rule runs under; those not built yet are skipped.
PROTOCOL_CASES = [("plain", 1), ("semi2k", 2), ("semi2k", 3), ("aby3", 3)]


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", help="also run tests marked slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(params=[c for c in PROTOCOL_CASES if c[0] in PROTOCOLS],
                ids=lambda c: f"{c[0]}-{c[1]}")
def protocol(request):
    """``dict(protocol=..., parties=...)`` for each protocol built so far."""
    name, parties = request.param
    return {"protocol": name, "parties": parties, "seed": 1234}


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
