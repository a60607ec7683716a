"""Shared fixtures: the protocols every rule is tested under, and a comparison helper."""
from __future__ import annotations

import gc

import jax
import numpy as np
import pytest

import secjax
from secjax.runtime.emulation import release_kernels

# (protocol, parties) combinations every rule runs under. semi2k with 3 parties exercises the
# N-party paths (carry-save adders, openings to N - 1 peers); CI leaves it to --runslow.
PROTOCOL_CASES = [("plain", 1, False), ("semi2k", 2, False), ("semi2k", 3, True),
                  ("aby3", 3, False)]


@pytest.fixture(autouse=True, scope="module")
def _release_kernels_after_module():
    """Each test module compiles its own protocol kernels; the whole suite's would not fit in
    memory at once (one process passed 24 GB), so they are released after every module."""
    yield
    release_kernels()
    gc.collect()


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", help="also run tests marked slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(params=[pytest.param((name, parties), id=f"{name}-{parties}",
                                      marks=[pytest.mark.slow] if slow else [])
                         for name, parties, slow in PROTOCOL_CASES])
def protocol(request):
    """``dict(protocol=..., parties=..., seed=...)`` for each protocol and party count."""
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
