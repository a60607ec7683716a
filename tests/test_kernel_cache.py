"""Compiled kernels: shared across shapes, kept by a runtime-owned cache, on disk between
processes, and never a source of wrong results when the disk holds something unexpected."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import assert_close

import secjax
from secjax import cli
from secjax.runtime import disk_cache, kernels
from secjax.runtime.emulation import _blocks
from secjax.runtime.fingerprint import fingerprint


def _net(x):
    return jnp.tanh(x) * x + jax.nn.sigmoid(x)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A fresh process-wide kernel cache over its own directory."""
    fresh = kernels.KernelCache(disk_cache.DiskCache(tmp_path / "cache"))
    monkeypatch.setattr(kernels, "_DEFAULT", fresh)
    return fresh


def _entries(cache) -> list:
    return sorted(cache.disk.directory.glob("*.kernel"))


def test_blocks_cover_every_element_once():
    sizes = (16, 64)
    for n in (1, 15, 16, 17, 64, 65, 128, 200):
        pieces = _blocks(n, sizes)
        assert [lo for lo, _, _ in pieces] == sorted(lo for lo, _, _ in pieces)
        assert sum(hi - lo for lo, hi, _ in pieces) == n
        assert all(hi - lo <= size and size in sizes for lo, hi, size in pieces)
        assert all(size == 64 for _, _, size in pieces[:-1])


@pytest.mark.parametrize("protocol", ["aby3", "semi2k"])
def test_one_kernel_serves_every_shape(cache, protocol):
    """An elementwise program compiles its kernels once per block size: once a small and a
    large array have run, other shapes (larger arrays cut into blocks too) compile nothing
    new, and the results are right."""
    first = secjax.secure_jit(_net, protocol=protocol, seed=3)
    for n in (30, 5000):
        x = np.linspace(-3, 3, n, dtype=np.float32)
        assert_close(first(x), jax.jit(_net)(x), atol=2e-2)
        assert first.last_stats.kernels_compiled > 0
    for shape in [(7, 11), (1000,), (3, 50, 20), (70001,)]:
        y = np.random.default_rng(0).uniform(-3, 3, shape).astype(np.float32)
        other = secjax.secure_jit(_net, protocol=protocol, seed=3)
        assert_close(other(y), jax.jit(_net)(y), atol=2e-2)
        assert other.last_stats.kernels_compiled == 0, shape


def test_arrays_larger_than_a_block_are_exact(cache):
    """Products of more elements than the largest block: every block right, cost exact."""
    n = 2**16 + 777
    x = np.random.default_rng(1).uniform(-4, 4, n).astype(np.float32)
    f = secjax.secure_jit(lambda a: a * a - a, protocol="aby3", seed=5)
    assert_close(f(x), x * x - x, atol=1e-3)
    ran, costed = f.last_cost.by_op(), f.cost(x).by_op()
    for op, tally in costed.items():  # cost() counts the reveal too
        assert (ran[op].sent, ran[op].rounds) == (tally.sent, tally.rounds), op
    assert ran["reveal"].sent == [8 * n] * 3 and ran["reveal"].rounds == 1


def test_scalar_products_truncate_with_the_amount_passed_whole(cache):
    f = secjax.secure_jit(lambda a, b: a * b + a, protocol="aby3", seed=2)
    assert_close(f(np.float32(2.5), np.float32(-3.0)), np.float32(-5.0), atol=1e-4)


def test_first_call_compiles_ahead_and_second_function_reuses(cache):
    f = secjax.secure_jit(_net, protocol="aby3", seed=1)
    x = np.ones(5, np.float32)
    f(x)
    assert f.last_stats.kernels_compiled > 0 and f.last_stats.plan >= 0
    g = secjax.secure_jit(_net, protocol="aby3", seed=2)
    g(x)
    assert g.last_stats.kernels_compiled == 0
    assert len(cache) > 0


def test_a_new_cache_loads_from_disk_instead_of_compiling(cache, monkeypatch):
    x = np.linspace(-2, 2, 9, dtype=np.float32)
    expected = secjax.secure_jit(_net, protocol="semi2k", seed=7)(x)
    assert _entries(cache)
    reopened = kernels.KernelCache(disk_cache.DiskCache(cache.disk.root))
    monkeypatch.setattr(kernels, "_DEFAULT", reopened)
    f = secjax.secure_jit(_net, protocol="semi2k", seed=7)
    np.testing.assert_array_equal(f(x), expected)
    assert f.last_stats.kernels_compiled == 0
    assert f.last_stats.kernels_loaded > 0


@pytest.mark.parametrize("damage", ["garbage", "truncated", "swapped"])
def test_damaged_entries_are_skipped_with_a_warning(cache, monkeypatch, damage):
    x = np.linspace(-2, 2, 9, dtype=np.float32)
    expected = secjax.secure_jit(_net, protocol="aby3", seed=7)(x)
    entries = _entries(cache)
    contents = [p.read_bytes() for p in entries]
    for i, path in enumerate(entries):
        if damage == "garbage":
            path.write_bytes(b"not a kernel")
        elif damage == "truncated":
            path.write_bytes(contents[i][: len(contents[i]) // 2])
        else:  # a valid entry stored under another kernel's name
            path.write_bytes(contents[(i + 1) % len(contents)])
    monkeypatch.setattr(
        kernels, "_DEFAULT", kernels.KernelCache(disk_cache.DiskCache(cache.disk.root))
    )
    f = secjax.secure_jit(_net, protocol="aby3", seed=7)
    with pytest.warns(disk_cache.CacheWarning, match="ignores kernel cache entry"):
        np.testing.assert_array_equal(f(x), expected)
    assert f.last_stats.kernels_compiled > 0


def test_a_directory_others_can_write_is_not_used(tmp_path, monkeypatch):
    root = tmp_path / "shared"
    root.mkdir()
    os.chmod(root, 0o777)
    monkeypatch.setattr(kernels, "_DEFAULT", kernels.KernelCache(disk_cache.DiskCache(root)))
    f = secjax.secure_jit(_net, protocol="plain")
    with pytest.warns(disk_cache.CacheWarning, match="writable by other users"):
        assert_close(f(np.ones(3, np.float32)), _net(np.ones(3, np.float32)), atol=2e-2)
    assert not list(root.rglob("*.kernel"))


def test_config_cache_false_writes_nothing(cache):
    secjax.secure_jit(_net, protocol="plain", cache=False)(np.ones(3, np.float32))
    assert not _entries(cache)


def test_environment_switches_the_cache_off(monkeypatch, tmp_path):
    monkeypatch.setattr(kernels, "_DEFAULT", None)
    monkeypatch.setenv("SECJAX_CACHE", "0")
    assert kernels.default_cache().disk is None
    monkeypatch.setattr(kernels, "_DEFAULT", None)
    monkeypatch.setenv("SECJAX_CACHE", "1")
    monkeypatch.setenv("SECJAX_CACHE_DIR", str(tmp_path / "here"))
    assert kernels.default_cache().disk.root == tmp_path / "here"


def test_fingerprints_name_functions_by_code_and_refuse_closures():
    def local(x):
        return x

    scale = 3
    assert fingerprint((jnp.add, 3, (1, 2))) == fingerprint((jnp.add, 3, (1, 2)))
    assert fingerprint(jnp.add) != fingerprint(jnp.subtract)
    assert fingerprint(lambda x: x) is None
    assert fingerprint(local) is None
    assert fingerprint(lambda x: x * scale) is None
    assert fingerprint(np.arange(3)) != fingerprint(np.arange(1, 4))
    assert fingerprint(object()) is None


def test_cache_command_shows_and_clears(cache, monkeypatch, capsys):
    monkeypatch.setenv("SECJAX_CACHE_DIR", str(cache.disk.root))
    secjax.secure_jit(_net, protocol="plain")(np.ones(3, np.float32))
    assert cli.main(["cache"]) == 0
    shown = capsys.readouterr().out
    assert str(cache.disk.root) in shown and "MiB" in shown
    assert cli.main(["cache", "clear"]) == 0
    assert not list(cache.disk.root.rglob("*.kernel"))


_CHILD = """
import json, sys, warnings
import numpy as np, jax.numpy as jnp, jax
import secjax
warnings.simplefilter("error", secjax.CacheWarning)
f = secjax.secure_jit(lambda x: jnp.tanh(x) * x + jax.nn.sigmoid(x), protocol="aby3", seed=4)
out = f(np.linspace(-2, 2, 9, dtype=np.float32))
print(json.dumps({"out": np.asarray(out).tolist(), "compiled": f.last_stats.kernels_compiled,
                  "loaded": f.last_stats.kernels_loaded, "planned": f.last_stats.planned}))
"""


def test_a_second_process_compiles_nothing(tmp_path):
    """Nor plans: the first process recorded that it planned this program."""
    env = dict(os.environ, SECJAX_CACHE_DIR=str(tmp_path / "cache"), SECJAX_CACHE="1")
    runs = [
        json.loads(
            subprocess.run(
                [sys.executable, "-c", _CHILD], env=env, check=True, capture_output=True, text=True
            ).stdout.splitlines()[-1]
        )
        for _ in range(2)
    ]
    assert runs[0]["compiled"] > 0 and runs[0]["planned"]
    assert runs[1]["compiled"] == 0 and runs[1]["loaded"] > 0 and not runs[1]["planned"]
    assert runs[0]["out"] == runs[1]["out"]
