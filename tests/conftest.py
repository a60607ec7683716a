"""Shared fixtures: the protocols every rule is tested under, the --runslow switch, and a
kernel cache of the run's own."""

from __future__ import annotations

import gc
import os
import shutil
import tempfile

import jax
import pytest

# (protocol, parties) combinations every rule runs under. semi2k with 3 parties exercises the
# N-party paths (carry-save adders, openings to N - 1 peers); CI leaves it to --runslow.
PROTOCOL_CASES = [
    ("plain", 1, False),
    ("semi2k", 2, False),
    ("semi2k", 3, True),
    ("aby3", 3, False),
]


def pytest_configure(config):
    """Every run starts from an empty kernel cache of its own (never the user's), so a run
    measures compiling honestly while its test modules share what they compiled."""
    if "SECJAX_CACHE_DIR" not in os.environ:
        config._secjax_cache = os.environ["SECJAX_CACHE_DIR"] = tempfile.mkdtemp(
            prefix="secjax-test-cache-"
        )


def pytest_unconfigure(config):
    own = getattr(config, "_secjax_cache", None)
    if own is not None:
        shutil.rmtree(own, ignore_errors=True)


@pytest.fixture(autouse=True, scope="module")
def _release_jax_caches_after_module():
    """The tests' own ``jax.jit`` references and eager ops fill JAX's caches (executables
    included); a module's are not needed by the next, so they are dropped between modules.
    secjax's kernels stay in their cache (memory and disk)."""
    yield
    jax.clear_caches()
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


@pytest.fixture(
    params=[
        pytest.param(
            (name, parties), id=f"{name}-{parties}", marks=[pytest.mark.slow] if slow else []
        )
        for name, parties, slow in PROTOCOL_CASES
    ]
)
def protocol(request):
    """``dict(protocol=..., parties=..., seed=...)`` for each protocol and party count."""
    name, parties = request.param
    return {"protocol": name, "parties": parties, "seed": 1234}
